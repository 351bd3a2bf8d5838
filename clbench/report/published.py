"""Published numbers (``published.yaml``) and the groups whose setting they match."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from clbench.errors import ClbenchError
from clbench.report.runs import Group

KINDS = ("table", "figure", "text")


@dataclass(frozen=True)
class Published:
    """One paper value: accuracy in percent and/or bytes, with its source."""

    id: str
    label: str
    setting: dict[str, Any] | None
    accuracy: float | None
    bytes: float | None
    kind: str
    where: str
    ref: str
    exact: bool
    note: str = ""
    range: tuple[float, float] | None = None  # per-task range of the accuracy, when given

    @property
    def source(self) -> str:
        how = "exact" if self.exact else "read off a plot"
        return f"{self.ref}, {self.kind}: {self.where} ({how})"

    def matches(self, group: Group) -> bool:
        return setting_matches(self.setting, group)


def setting_matches(setting: dict[str, Any] | None, group: Group) -> bool:
    """Whether every field of ``setting`` equals the group's (``variant`` and ``params.NAME``
    included); a missing setting matches nothing."""
    if setting is None:
        return False
    config = group.config
    for key, value in setting.items():
        if key == "variant":
            have = group.variant
        elif key.startswith("params."):
            have = config["params"].get(key.removeprefix("params."))
        else:
            have = config.get(key)
        if have != value:
            return False
    return True


def load(text: str | None = None) -> list[Published]:
    """The packaged values (or those in ``text``), checked."""
    if text is None:
        text = resources.files("clbench.report").joinpath("published.yaml").read_text()
    data = yaml.safe_load(text)
    refs = data["refs"]
    out = []
    for item in data["values"]:
        source = item["source"]
        if source["kind"] not in KINDS or source["ref"] not in refs:
            raise ClbenchError(f"published value {item['id']}: source kind must be one of "
                               f"{', '.join(KINDS)} and ref one of {', '.join(refs)}")
        numbers = [item.get(k) for k in ("accuracy", "bytes")]
        if not all(n is None or isinstance(n, int | float) for n in numbers):
            raise ClbenchError(f"published value {item['id']}: accuracy and bytes must be "
                               "numbers (write exponents with a sign: 1.5e+6)")
        out.append(Published(
            item["id"], item["label"], item["setting"], *numbers,
            source["kind"], source["where"], source["ref"], bool(item["exact"]),
            item.get("note", ""), tuple(item["range"]) if item.get("range") else None))
    return out


def matching(values: list[Published], group: Group) -> list[Published]:
    return [p for p in values if p.matches(group)]
