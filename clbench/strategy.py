"""Methods that are Avalanche strategies: built lazily, fed by the clbench loader, evaluated
batch by batch by the default adapter below."""

from __future__ import annotations

from math import prod
from typing import Any, ClassVar

from clbench.method import Answer, Bytes, EvalRequest, Method
from clbench.params import Param

OPTIMIZER_PARAMS = (
    Param("optimizer", str, "sgd", "optimizer of the trained weights", choices=("sgd", "adam",
                                                                                 "rmsprop")),
    Param("lr", float, 0.01, "learning rate (--lr)", low=0.0),
    Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=1.0),
    Param("weight_decay", float, 0.0, "weight decay", low=0.0),
)


def make_optimizer(params: Any, settings: dict[str, Any]) -> Any:
    """The optimizer named by the ``optimizer``/``lr``/``momentum``/``weight_decay`` params."""
    import torch

    kind, lr, wd = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=wd)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)


class AvalancheMethod(Method):
    """An Avalanche strategy class (by name in ``avalanche.training``) on a plain model.

    Subclasses set ``strategy_class`` and may override :meth:`strategy_kwargs`. One Avalanche
    epoch is one pass of the clbench loader: with ``--iters N`` that pass is exactly N batches
    (``train_epochs=1``); with ``--epochs E`` it is one pass over the data (``train_epochs=E``).
    """

    strategy_class: ClassVar[str] = "Naive"
    models = ("lenet", "fc1024")
    params = OPTIMIZER_PARAMS
    bytes_rules = {"fp32": "fp32-parameters: 4 bytes per model parameter (one shared model)"}

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        import avalanche.training
        import torch

        from clbench.models import build_mlp
        from clbench.streams import fast_strategy, quiet_evaluator

        torch.manual_seed(ctx.generator("global").initial_seed())  # plugins that use it
        in_features = prod(ctx.props.input_shape)
        self.model = build_mlp(ctx.config.model, in_features, ctx.outputs, ctx.generator("model"))
        config = ctx.config
        cls = fast_strategy(getattr(avalanche.training, self.strategy_class))
        self.strategy = cls(
            model=self.model,
            optimizer=make_optimizer(self.model.parameters(), ctx.params),
            criterion=torch.nn.CrossEntropyLoss(),
            train_mb_size=config.batch_size,
            train_epochs=config.epochs or 1,
            eval_mb_size=config.eval_batch_size,
            device=ctx.device,
            evaluator=quiet_evaluator(),
            **self.strategy_kwargs(),
        )
        self.strategy.clbench_ctx = ctx

    def strategy_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the Avalanche strategy (from params)."""
        return {}

    def train_experience(self, experience: Any) -> None:
        self.strategy.train(experience)

    def logits(self, x: Any, task: int) -> Any:
        import torch
        from avalanche.models.utils import avalanche_forward

        return avalanche_forward(self.model, x, torch.full((len(x),), task, device=x.device))

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        """The default adapter: one forward pass per batch; with the task given in the
        class-incremental view, the task's own classes only."""
        import torch

        self.model.eval()
        per_task = self.ctx.props.classes_per_task
        incremental = self.ctx.label_view == "class-incremental"
        answers = []
        with torch.no_grad():
            for request in requests:
                visible = request.task if request.task is not None and not incremental else 0
                predictions = []
                for x in request.batches:
                    out = self.logits(x, visible if self.ctx.label_view == "task" else 0)
                    if incremental and request.task is not None:
                        low = request.task * per_task
                        predictions.append(out[:, low:low + per_task].argmax(1) + low)
                    else:
                        predictions.append(out.argmax(1))
                answers.append(Answer(predictions))
        self.model.train()
        return answers

    def bytes(self) -> dict[str, Bytes]:
        count = sum(p.numel() for p in self.model.parameters())
        return {"fp32": Bytes(4 * count, "fp32-parameters")}
