"""Saved state read back (an attribution record, kept evaluation results, a step's JSON) is untrusted input:
it is checked value by value before use, and whatever is wrong is named with the file and the place in it
(`grid['0.01'].indices[3]`), never a traceback or a silently wrong index."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NoReturn

from rejuv.errors import RejuvError

_KINDS = {"an object": dict, "a list": list, "text": str, "an integer": int, "a number": float, "true or false": bool}


class DamagedRecord(RejuvError):
    """A saved file rejuv wrote that does not hold what it should (edited, cut or overwritten)."""


def strict_loads(text: str) -> Any:
    """JSON as RFC 8259 has it: the `NaN` and `Infinity` Python's parser accepts are refused (ValueError), so
    that no saved value read back is a number no other tool could read, or a silent NaN in a table."""
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value in `path`; a missing, unreadable, non-UTF-8 or non-JSON file (NaN and Infinity
    included) is a `DamagedRecord`."""
    try:
        return strict_loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DamagedRecord(f"{path}: the {what} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DamagedRecord(f"{path}: not a readable {what} ({exc})") from None


class Checked:
    """Checks the parts of one saved JSON value; each failure names the file and the place in the value."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what = str(path), what

    def fail(self, where: str, problem: str) -> NoReturn:
        raise DamagedRecord(f"{self.path}: not a valid {self.what}: {where or 'the top level'}: {problem}")

    def of(self, value: Any, kind: str, where: str) -> Any:
        """`value` if it is of `kind` (see `_KINDS`); a number is finite and an integer is not a bool."""
        expected = _KINDS[kind]
        ok = isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool))
        if expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            self.fail(where, f"expected {kind}, got {_shown(value)}")
        return float(value) if expected is float else value

    def get(self, obj: dict, key: str, kind: str, where: str = "") -> Any:
        """`obj[key]`, of `kind`."""
        place = f"{where}[{key!r}]"
        if key not in obj:
            self.fail(place, "missing")
        return self.of(obj[key], kind, place)

    def index(self, value: Any, size: int, where: str) -> int:
        """An integer in [0, size): a negative or too large index is refused, never wrapped around."""
        value = self.of(value, "an integer", where)
        if not 0 <= value < size:
            self.fail(where, f"{value} is outside [0, {size})")
        return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
