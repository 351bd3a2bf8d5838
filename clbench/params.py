"""Typed method params: declared without torch, parsed from ``--param name=value``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clbench.errors import ClbenchError, closest

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One knob of a method: a name, a type, a default and one line of help.

    ``choices`` restricts values; with ``multiple`` the value is a comma-separated subset of the
    choices (kept in the given order, e.g. ``objective=H,G``). ``low``/``high`` bound numbers
    (inclusive).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    multiple: bool = False
    low: float | None = None
    high: float | None = None

    def parse(self, text: str) -> Any:
        """Turn the text of ``--param name=text`` into a checked value."""
        if self.multiple:
            items = tuple(self._parse_one(part.strip()) for part in text.split(",") if part.strip())
            if not items or len(set(items)) != len(items):
                raise ClbenchError(
                    f"--param {self.name}={text}: give distinct values from "
                    f"{', '.join(map(str, self.choices or ()))}, separated by commas"
                )
            return items
        return self._parse_one(text)

    def check(self, value: Any) -> Any:
        """Validate a value given in Python (defaults, presets, records); return it normalised."""
        if self.multiple:
            values = (value,) if isinstance(value, str) else tuple(value)
            return self.parse(",".join(str(v) for v in values))
        return self.parse(str(value)) if not isinstance(value, self.type) else self._bounded(value)

    def _parse_one(self, text: str) -> Any:
        try:
            if self.type is bool:
                low = text.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError(text)
                value: Any = low in _TRUE
            elif self.type is int:
                value = int(text)
            elif self.type is float:
                value = float(text)
            else:
                value = self.type(text)
        except ValueError:
            raise ClbenchError(
                f"--param {self.name}={text}: expected {self.type.__name__} ({self.help})"
            ) from None
        return self._bounded(value)

    def _bounded(self, value: Any) -> Any:
        if self.choices is not None and value not in self.choices:
            raise ClbenchError(
                f"--param {self.name}={value}: choose one of {', '.join(map(str, self.choices))}"
            )
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise ClbenchError(
                f"--param {self.name}={value}: must lie in [{self.low}, {self.high}]"
            )
        return value

    def describe(self) -> str:
        """``name (type, default x): help``, for ``clbench list methods -v``."""
        kind = "|".join(map(str, self.choices)) if self.choices else self.type.__name__
        if self.multiple:
            kind = f"{kind} (comma-separated)"
        return f"{self.name} ({kind}, default {format_value(self.default)}): {self.help}"


def format_value(value: Any) -> str:
    """Show a param value the way it is typed on the command line."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def parse_assignments(items: list[str], option: str = "--param") -> dict[str, str]:
    """Split repeated ``name=value`` options into a dict, refusing malformed or repeated names."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ClbenchError(f"{option} {item}: write it as {option} name=value")
        if name in out:
            raise ClbenchError(f"{option} {name} is given twice: keep one")
        out[name] = value.strip()
    return out


def resolve_params(
    declared: tuple[Param, ...], given: dict[str, str], method: str, preset: dict[str, Any]
) -> dict[str, Any]:
    """Defaults, then the method's preset for this setting, then the user's ``--param`` values."""
    by_name = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        close = closest(unknown[0], by_name)
        if len(unknown) == 1 and close:
            raise ClbenchError(f"method '{method}' has no param {unknown[0]}: did you mean "
                               f"{' or '.join(repr(c) for c in close)}?")
        known = ", ".join(sorted(by_name)) or "none"
        raise ClbenchError(
            f"method '{method}' has no param {', '.join(unknown)} (its params: {known}; "
            f"see clbench list methods -v)"
        )
    values = {p.name: p.check(p.default) if p.default is not None else None for p in declared}
    for name, value in preset.items():
        if name in by_name:
            values[name] = by_name[name].check(value)
    for name, text in given.items():
        values[name] = by_name[name].parse(text)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
