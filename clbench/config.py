"""A run's configuration: defaults (from the options table), method presets and user options
resolved into one frozen, canonical description whose hash is the run id."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from clbench.errors import ClbenchError
from clbench.options import defaults
from clbench.params import parse_assignments, resolve_params
from clbench.record import SCHEMA_VERSION

#: Every run setting's default, where neither the user nor a preset sets it (the options table
#: declares them).
DEFAULTS: dict[str, Any] = defaults()

#: Fields of the config that do not enter the run id.
NOT_HASHED = ("tags",)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (plus its tags, which do not)."""

    method: str
    scenario: str
    benchmark: str
    dataset: str
    data_identity: dict[str, Any]
    model: str
    params: dict[str, Any]
    density: float | None
    label_view: str
    tasks: int
    iters: int | None
    epochs: int | None
    batch_size: int
    eval_batch_size: int
    seed: int
    data_seed: int
    threads: int
    device: str
    eval_at: list[int]
    val_fraction: float
    plugin: dict[str, str] | None = None
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def canonical(self) -> str:
        """Sorted-key JSON of the hashed fields: equal configs give equal text."""
        data = {k: v for k, v in self.to_dict().items() if k not in NOT_HASHED}
        data["schema_version"] = SCHEMA_VERSION
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    @property
    def group_key(self) -> str:
        """The run id of the same config without its seed (seeds of one experiment)."""
        data = json.loads(self.canonical())
        for key in ("seed", "data_seed"):
            data.pop(key)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def default_eval_at(tasks: int) -> list[int]:
    """After every task up to 20 tasks; beyond, after 10, every 50, and at the end."""
    if tasks <= 20:
        return list(range(1, tasks + 1))
    return sorted({10, *range(50, tasks, 50), tasks})


def parse_eval_at(text: str | None, tasks: int) -> list[int]:
    """``--eval-at 10,50,100`` (the end is always added), ``all`` or ``end``."""
    if text is None:
        return default_eval_at(tasks)
    text = text.strip().lower()
    if text == "all":
        return list(range(1, tasks + 1))
    if text == "end":
        return [tasks]
    try:
        points = {int(p) for p in text.split(",") if p.strip()}
    except ValueError:
        raise ClbenchError(
            f"--eval-at {text}: give task counts like 10,50,100, or all, or end"
        ) from None
    bad = sorted(p for p in points if not 1 <= p <= tasks)
    if bad:
        raise ClbenchError(f"--eval-at: {bad[0]} is outside 1..{tasks} (the number of tasks)")
    return sorted(points | {tasks})


def matching_presets(method: type, values: dict[str, Any], preset: str | None) -> tuple[dict, dict]:
    """Options and params from the method's presets that match, later ones winning.

    Matching reads the user's options first, then what earlier presets set, then the defaults.
    """
    options: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for p in method.presets:
        def current(key: str) -> Any:
            if key == "preset":
                return preset
            if values.get(key) is not None:
                return values[key]
            return options.get(key, DEFAULTS.get(key))

        if all(current(k) == v for k, v in p.when.items()):
            options.update(p.options)
            params.update(p.params)
    return options, params


def resolve_options(
    method: type, given: dict[str, Any], param_items: list[str], preset: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge defaults, the method's presets and the user's options; parse and check params.

    ``given`` holds the user's options (None where not given). Returns (options, params).
    A preset may set the seed (the network's); the data seed follows the user's ``--seed`` or
    the default, so the same ``--seed`` gives every method the same stream.
    """
    if preset is not None and not any(p.when.get("preset") == preset for p in method.presets):
        names = sorted({p.when["preset"] for p in method.presets if "preset" in p.when})
        raise ClbenchError(
            f"method '{method.name}' has no preset '{preset}' "
            f"(its presets: {', '.join(names) or 'none'})"
        )
    preset_options, preset_params = matching_presets(method, given, preset)
    if "data_seed" in preset_options:
        raise ClbenchError(f"method '{method.name}': a preset may not set data_seed (the tasks "
                           "follow --seed or --data-seed, the same for every method)")
    options = dict(DEFAULTS)
    options.update(preset_options)
    user = {k: v for k, v in given.items() if v is not None}
    if "iters" in user or "epochs" in user:  # choosing one length unit clears the other
        options["iters"] = options["epochs"] = None
    if "density" in user or "sparsity" in user:
        options["density"] = None
    options.update(user)
    _density(options)
    if options["iters"] is None and options["epochs"] is None:
        options["iters"] = DEFAULTS["iters"]
    if options["iters"] is not None and options["epochs"] is not None:
        raise ClbenchError("--iters and --epochs both set: give one length per task")

    given_params = parse_assignments(param_items)
    lr = options.pop("lr", None)
    if lr is not None:
        if method.primary_lr is None:
            raise ClbenchError(f"method '{method.name}' has no learning rate: drop --lr")
        if method.primary_lr in given_params:
            raise ClbenchError(f"--lr and --param {method.primary_lr} both set: keep one")
        given_params[method.primary_lr] = str(lr)
    params = resolve_params(method.params, given_params, method.name, preset_params)
    _check_numbers(options)
    if options["data_seed"] is None:  # a preset's seed is the network's; the stream's is not
        options["data_seed"] = user.get("seed", DEFAULTS["seed"])
    options["threads"] = options["threads"] or os.cpu_count() or 1
    return options, params


def _density(options: dict[str, Any]) -> None:
    sparsity = options.pop("sparsity", None)
    if sparsity is not None:
        if options.get("density") is not None:
            raise ClbenchError("--density and --sparsity both set: sparsity is 1 - density, "
                               "give one")
        if not 0 <= sparsity < 1:
            raise ClbenchError(f"--sparsity {sparsity}: must lie in [0, 1) (fraction removed)")
        options["density"] = round(1.0 - sparsity, 12)
    density = options.get("density")
    if density is not None and not 0 < density <= 1:
        raise ClbenchError(f"--density {density}: must lie in (0, 1] (fraction of weights kept)")


def _check_numbers(options: dict[str, Any]) -> None:
    for key in ("tasks", "batch_size", "eval_batch_size", "iters", "epochs", "threads"):
        value = options.get(key)
        if value is not None and value < 1:
            flag = "--" + key.replace("_", "-")
            raise ClbenchError(f"{flag} {value}: must be at least 1")
    if not 0 <= options["val_fraction"] < 1:
        raise ClbenchError(f"--val-fraction {options['val_fraction']}: must lie in [0, 1)")
    if options["seed"] < 0 or (options["data_seed"] or 0) < 0:
        raise ClbenchError("--seed and --data-seed must be non-negative")
