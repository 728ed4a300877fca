"""Do two runs of the same commands, before and after a refactor, write the same outputs?

    python benchmarks/same_outputs.py BEFORE AFTER

BEFORE and AFTER are output folders of the same commands run from two trees, in folders whose paths differ
only in one name (e.g. /tmp/check/old/demo and /tmp/check/new/demo). Every file of either is put in one of
four classes: byte-identical; identical once that name is scrubbed from its text (outputs record the paths
they were given); equal as data once times are scrubbed too (JSON values of timing keys, "N.N min" in text,
the code's commit, and folder fingerprints, which hash modification times); or different. Exits 1 when a
file differs or exists on one side only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

SKIPPED = (".rejuv-output", ".rejuv-steps", "timings.jsonl")  # locks, markers and the step timing log
TIME_KEYS = {"seconds", "compute_seconds", "step_time", "train_runtime", "commit", "base_files", "sft_files"}


def _label_of(before: Path, after: Path) -> tuple[str, str, str]:
    """The one path component the two folders differ in, and the path up to it."""
    a, b = before.resolve().parts, after.resolve().parts
    differing = [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]
    if len(a) != len(b) or len(differing) != 1:
        raise SystemExit(f"{before} and {after}: the paths must differ in exactly one folder name")
    i = differing[0]
    return str(Path(*a[:i])), a[i], b[i]


def _unlabel(text: str, root: str, label: str) -> str:
    folder = f"{root}/{label}"
    return text.replace(folder, f"{root}/RUN").replace(folder.strip("/").replace("/", "__"), "RUN")


def _untimed_text(text: str) -> str:
    text = re.sub(r"\d+(\.\d+)? min\b", "N min", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "COMMIT", text)  # a git commit, as the records abbreviate it
    text = re.sub(r"\| \d+\.\d+\.\d+ \|", "| COMMIT |", text)  # a record made outside git names the version
    text = re.sub(r"<td>\d+\.\d+\.\d+</td>", "<td>COMMIT</td>", text)
    text = re.sub(r"\| \d+(\.\d+)? \| COMMIT \|", "| T | COMMIT |", text)  # minutes beside the commit
    return re.sub(r"<td>\d+(\.\d+)?</td>(\s*)<td>COMMIT</td>", r"<td>T</td>\2<td>COMMIT</td>", text)


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items()
                if k not in TIME_KEYS and not k.endswith(("_runtime", "_per_second", "_seconds"))}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return _untimed_text(value) if isinstance(value, str) else value


def _as_data(text: str):
    try:
        return _untimed(json.loads(text))
    except ValueError:
        try:
            return [_untimed(json.loads(line)) for line in text.splitlines() if line.strip()]
        except ValueError:
            return None


def compare(before: Path, after: Path) -> dict:
    """Each file's class, by its path relative to the run (with the run's name scrubbed from it)."""
    root, old, new = _label_of(before, after)

    def files(folder: Path, label: str) -> dict[str, Path]:
        return {_unlabel(str(p.relative_to(folder)), root, label): p for p in sorted(folder.rglob("*"))
                if p.is_file() and not any(s in str(p) for s in SKIPPED)}

    a, b = files(before, old), files(after, new)
    found = {"only_before": sorted(set(a) - set(b)), "only_after": sorted(set(b) - set(a)), "identical": [],
             "identical_once_paths_scrubbed": [], "equal_once_times_scrubbed": [], "different": []}
    for name in sorted(set(a) & set(b)):
        x, y = a[name].read_bytes(), b[name].read_bytes()
        if x == y:
            found["identical"].append(name)
            continue
        try:
            tx, ty = _unlabel(x.decode(), root, old), _unlabel(y.decode(), root, new)
        except UnicodeDecodeError:
            found["different"].append(name)
            continue
        if tx == ty:
            found["identical_once_paths_scrubbed"].append(name)
        elif (_as_data(tx) is not None and _as_data(tx) == _as_data(ty)) or _untimed_text(tx) == _untimed_text(ty):
            found["equal_once_times_scrubbed"].append(name)
        else:
            found["different"].append(name)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    found = compare(args.before, args.after)
    both = sum(len(found[k]) for k in ("identical", "identical_once_paths_scrubbed", "equal_once_times_scrubbed",
                                       "different"))
    print(f"{both} files in both: {len(found['identical'])} byte-identical, "
          f"{len(found['identical_once_paths_scrubbed'])} identical once the run's folder name is scrubbed, "
          f"{len(found['equal_once_times_scrubbed'])} equal as data once times are scrubbed too, "
          f"{len(found['different'])} different; {len(found['only_before'])} only before, "
          f"{len(found['only_after'])} only after")
    for key in ("different", "only_before", "only_after"):
        for name in found[key]:
            print(f"  {key.replace('_', ' ')}: {name}")
    return 1 if found["different"] or found["only_before"] or found["only_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
