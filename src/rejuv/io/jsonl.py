"""JSON Lines and JSON files: one reader that names the bad line, one writer."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path

from rejuv.errors import RejuvError


def numbered_jsonl(path: str | Path, what: str = "data") -> list[tuple[int, object]]:
    """(line number, parsed JSON) for every non-blank line; a missing file or bad line is named in the error."""
    path = Path(path)
    if not path.is_file():
        raise RejuvError(f"{path}: {what} file not found")
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    rows.append((lineno, json.loads(text)))
                except json.JSONDecodeError as exc:
                    raise RejuvError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise RejuvError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a line)") from exc
    return rows


def read_jsonl(path: str | Path, missing_ok: bool = False) -> list:
    """Every record of a JSONL file (a log a run wrote); [] for a missing file when `missing_ok`."""
    if missing_ok and not Path(path).exists():
        return []
    return [row for _, row in numbered_jsonl(path)]


def write_jsonl(path: str | Path, rows: Iterable, append: bool = False) -> Path:
    """One compact JSON object per line; numpy and torch scalars are written as floats."""
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=float) + "\n")
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Indented JSON (a dataclass as its fields); values JSON cannot hold are written as text."""
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    Path(path).write_text(json.dumps(strict(obj), indent=2, default=str, allow_nan=False) + "\n")
    return Path(path)


def strict(obj):
    """`obj` with every NaN or infinite float replaced by None, so that it is valid JSON (RFC 8259): manifests
    and reports are read by tools that reject the bare `NaN` Python's json writes."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def strict_dumps(obj, indent: int | None = 2) -> str:
    """JSON text that any parser accepts: non-finite numbers become null."""
    return json.dumps(strict(obj), indent=indent, allow_nan=False)
