"""Words a reader knows: settings, group labels that show only what differs, and one colour
per method and line style per variant for the whole report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clbench.report.runs import Group, flat_config

METHODS = {"supsup": "SupSup", "batche": "BatchE", "psp": "PSP", "upper-bound": "Upper Bound",
           "lower-bound": "Lower Bound", "separate-heads": "Separate Heads",
           "exssnet": "ExSSNeT", "supsup-hopfield": "HopSupSup",
           "supsup-units": "SupSup unit masks", "avalanche:ewc": "Avalanche EWC",
           "avalanche:naive": "Avalanche Naive"}
SCENARIOS = {"gg": "GG", "gns": "GNs", "gnu": "GNu", "nns": "NNs"}
MODELS = {"lenet": "LeNet", "fc1024": "FC-1024", "gemresnet18": "GEMResNet18",
          "bnnet": "BNNet", "resnet50": "ResNet-50", "resnet18": "ResNet-18"}
BENCHMARKS = {"permuted": "Permuted", "rotated": "Rotated", "split": "Split"}
DATASETS = {"mnist": "MNIST", "mnist-5k": "MNIST (5k)", "cifar10": "CIFAR-10",
            "cifar10-jpg": "CIFAR-10 (JPEG copy)", "cifar100": "CIFAR-100",
            "imagenet": "ImageNet"}
#: How a config field reads in a label ("{}" is its value); fields not listed read as
#: "name value", and None means the field never shows (the variant or setting tells it).
FIELDS: dict[str, str | None] = {
    "objective": None, "tasks": None, "iters": None, "epochs": None, "eval_at": "evaluated {}",
    "density": "density {}", "lr": "lr {}", "weight_lr": "weight lr {}",
    "output_size": "output {}", "kkt": "KKT {}", "mask": "{} mask", "memory": "{} memory",
    "optimizer": "{}", "threads": "{}", "val_fraction": "validation {}",
    "label_view": None, "batch_size": "batch {}", "eval_batch_size": "test batch {}",
    "inference": "{} inference", "infer_batch": "inference on {} images"}
MAX_FIELDS = 3
#: Colours (tab10 order) of the known methods; others take the remaining ones in name order.
COLOURS = {"supsup": 0, "batche": 1, "psp": 2, "exssnet": 3, "separate-heads": 4,
           "supsup-hopfield": 5, "supsup-units": 6, "avalanche:ewc": 8, "avalanche:naive": 9,
           "lower-bound": 7}
BOUND = (0.15, 0.15, 0.15)  # Upper Bound (drawn wide and light: BAND) and unlisted methods
BAND = {"width": 7.0, "layer": 2, "lighten": 0.65}  # the Upper Bound's line, under the others
STYLES = {"default": "-", "H": "-", "G": "--"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def method_name(method: str) -> str:
    return METHODS.get(method, method)


def scenario_name(config: dict[str, Any]) -> str:
    view = config.get("label_view", "task")
    name = SCENARIOS.get(config["scenario"], config["scenario"])
    return name if view == "task" else f"{name}, {view}"


def setting_key(config: dict[str, Any]) -> tuple:
    """Benchmark, dataset, model, number of tasks and training length: what a leaderboard
    compares over (the scenario is a column)."""
    length = ("epochs", config["epochs"]) if config.get("epochs") else ("iters", config["iters"])
    return (config["benchmark"], config["dataset"], config["model"], config["tasks"], *length)


def setting_title(config: dict[str, Any]) -> str:
    """E.g. "PermutedMNIST · LeNet · 250 tasks · 1,000 iterations per task"."""
    bench = BENCHMARKS.get(config["benchmark"], config["benchmark"])
    data = DATASETS.get(config["dataset"], config["dataset"])
    length = (f"{config['epochs']} epoch{'s' * (config['epochs'] != 1)} per task"
              if config.get("epochs") else f"{config['iters']:,} iterations per task")
    known = config["benchmark"] in BENCHMARKS and config["dataset"] in DATASETS
    return " · ".join([bench + data if known and " " not in data else f"{bench} {data}",
                       MODELS.get(config["model"], config["model"]),
                       f"{config['tasks']:,} tasks", length])


def _value(field: str, value: str) -> str:
    if field == "eval_at":
        points = value.split(",")
        if points == [str(t) for t in range(1, len(points) + 1)]:
            return "after every task"
        return "after " + ", ".join(points)
    if field == "threads":
        return f"{value} thread{'s' * (value != '1')}"
    if field == "val_fraction":
        return f"{float(value) * 100:g} %"
    return {"None": "—", "topk": "top-k"}.get(value, value)


def word(field: str, value: str) -> str | None:
    """A config field and its value as a reader says it (None: not shown)."""
    if field in FIELDS and FIELDS[field] is None:
        return None
    form = FIELDS.get(field) or f"{field.replace('_', ' ')} {{}}"
    return form.format(_value(field, value))


def labels(groups: list[Group], scenario: bool = True,
           hide: tuple[str, ...] = ()) -> dict[int, str]:
    """A label per group (by ``id``): the method, scenario and variant as the paper writes
    them ("SupSup (GNu, H)"), then the config fields that differ among these groups' configs
    of the same method, in words; a config hash only where labels would still clash."""
    by_method: dict[str, list[Group]] = {}
    for g in groups:
        by_method.setdefault(g.config["method"], []).append(g)
    out: dict[int, str] = {}
    for members in by_method.values():
        configs = list({g.key: flat_config(g.config) for g in members}.items())
        fields = sorted({k for _, f in configs for k in f})
        differ = [k for k in fields if len({f.get(k, "None") for _, f in configs}) > 1
                  and FIELDS.get(k, "") is not None and k not in hide]
        for g in members:
            flat = flat_config(g.config)
            inside = [scenario_name(g.config)] if scenario else []
            inside += [] if g.variant == "default" else [g.variant]
            head = method_name(g.config["method"]) + (f" ({', '.join(inside)})" if inside
                                                      else "")
            words = [w for k in differ[:MAX_FIELDS] if (w := word(k, flat.get(k, "None")))]
            words += [f"stream {g.stream}"] if g.stream else []
            out[id(g)] = " · ".join([head, *words])
    seen: dict[str, list[Group]] = {}
    for g in groups:
        seen.setdefault(out[id(g)], []).append(g)
    for label, clash in seen.items():
        if len({g.key for g in clash}) > 1 and not hide:
            for g in clash:
                out[id(g)] = f"{label} · config {g.key[:8]}"
    return out


@dataclass(frozen=True)
class Look:
    """How one series is drawn."""

    color: tuple[float, float, float]
    ls: str
    marker: str
    width: float = 1.8
    layer: int = 3  # lines of a higher layer are drawn over those of a lower one


def base_colour(method: str, methods: list[str]) -> tuple[float, float, float]:
    import seaborn as sns

    if method == "upper-bound":
        return BOUND
    if method in COLOURS:
        return tuple(sns.color_palette("tab10")[COLOURS[method]])
    extra = sns.color_palette("tab20")[1::2]  # the lighter halves, unused by known methods
    others = sorted(m for m in methods if m not in COLOURS and m != "upper-bound")
    return tuple(extra[others.index(method) % len(extra)]) if method in others else BOUND


def looks(groups: list[Group], methods: list[str]) -> dict[int, Look]:
    """One colour per method (the same in every figure), a line style per variant (H and
    default solid, G dashed); several series of one method get tints of its colour (light
    to dark) per variant, and their own markers. The Upper Bound is a wide light band under
    the other lines, so that a method as good as it stays visible on it."""
    by_method: dict[str, list[Group]] = {}
    for g in groups:
        by_method.setdefault(g.config["method"], []).append(g)
    variants = sorted({g.variant for g in groups} - set(STYLES))
    out = {}
    for method, members in by_method.items():
        colour = base_colour(method, methods)
        for k, g in enumerate(members):
            ls = STYLES.get(g.variant) or (":", "-.")[variants.index(g.variant) % 2]
            same = [m for m in members if m.variant == g.variant]
            light = 0.55 * (len(same) - 1 - same.index(g)) / max(len(same) - 1, 1)
            band = method == "upper-bound"
            light = max(light, BAND["lighten"]) if band else light
            tint = tuple(c + (1 - c) * light for c in colour)
            line = (BAND["width"], BAND["layer"]) if band else ()
            out[id(g)] = Look(tint, ls, MARKERS[k % len(MARKERS)], *line)
    return out
