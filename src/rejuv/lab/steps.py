"""The lab's steps: each runs once (its output folder is the proof it ran), is timed, and says where the
demo stands.

A step is skipped when its folder exists and is as the step left it (an interrupted demo resumes there; a
step whose folder an earlier step of the same run wrote costs nothing and is measured as such). What a step
wrote is recorded when it finishes (`.rejuv-steps/`: every file's size and SHA-256); a step folder that does
not match its record (edited, cut, half-written by a killed run, or never recorded) is untrusted: it is set
aside as `<name>.damaged-N`, said in the log, and the step runs again. Every seed runs the same
steps in the same order, so once one seed has finished its step count is known, and each position's
measured times give the time left: the rest of this seed plus the seeds still to come. Until every
remaining position has been measured (the first seed; a resumed run whose earlier steps were reused),
the log says the elapsed time only, never a guess.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from rejuv.evaluation.kept import write_atomic
from rejuv.io.fingerprint import file_sha256
from rejuv.io.jsonl import write_jsonl
from rejuv.io.output import mark_written
from rejuv.io.records import strict_loads

RECORDS = ".rejuv-steps"
TIMINGS = "timings.jsonl"


def _record_path(out: Path, folder: Path) -> Path:
    relative = os.path.relpath(folder, out)
    return out / RECORDS / (hashlib.sha256(relative.encode()).hexdigest()[:32] + ".json")


def _contents(folder: Path) -> dict[str, list]:
    """Every file of a step's output (or the one file it is): relative name → [size, SHA-256]."""
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return {os.path.relpath(f, folder): [f.stat().st_size, file_sha256(f)] for f in files}


def record_step(out: Path, folder: Path) -> None:
    """Record what a finished step left in `folder`, and list it in the demo's output marker as rejuv's."""
    path = _record_path(out, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"step": os.path.relpath(folder, out), "files": _contents(folder)}) + "\n")
    mark_written(out, "demo", [folder, path])


def damage(out: Path, folder: Path) -> str | None:
    """Why `folder` is not as its step left it, or None when it is."""
    try:
        recorded = json.loads(_record_path(out, folder).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if not isinstance(recorded, dict):
        return "no record of the step that wrote it (interrupted, or not written by this demo)"
    found = _contents(folder)
    changed = sorted(set(recorded) ^ set(found)) + sorted(k for k in set(recorded) & set(found)
                                                          if recorded[k] != found[k])
    return f"{changed[0]} differs from what its step wrote" if changed else None


def set_aside(folder: Path) -> Path:
    """Move a damaged step output out of the way (never deleted: it may hold what a user wants to see)."""
    n = 1
    while (aside := folder.with_name(f"{folder.name}.damaged-{n}")).exists():
        n += 1
    os.replace(folder, aside)
    return aside


def append_timing(path: Path, step: str, seconds: float) -> None:
    """One line of the time log; a line cut by a killed run is ended first, so the new one stays whole."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
        if cut:
            with open(path, "a", encoding="utf-8") as f:
                f.write("\n")
    write_jsonl(path, [{"step": step, "seconds": round(seconds, 2)}], append=True)


def read_timings(path: Path) -> list[dict]:
    """The demo's time log read back as untrusted: a line that is not a step's name and a finite, non-negative
    number of seconds (cut by a killed run, edited) is left out, saying which line; the steps themselves are
    checked by their own records, so a bad line costs only that step's time in the report."""
    if not path.is_file():
        return []
    rows = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        log(f"{path}: cannot be read ({exc.strerror}); the steps' times are left out of the report")
        return []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = strict_loads(line)
        except ValueError:
            row = None
        seconds = row.get("seconds") if isinstance(row, dict) else None
        if (isinstance(row, dict) and isinstance(row.get("step"), str) and isinstance(seconds, int | float)
                and not isinstance(seconds, bool) and math.isfinite(seconds) and seconds >= 0):
            rows.append({"step": row["step"], "seconds": float(seconds)})
        else:
            log(f"{path}:{number}: not a step's time (cut or edited); that step's time is left out")
    return rows


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Steps:
    """Callable as `steps(out, folder, message, work)`: run `work()` unless `folder` exists, log the step
    with step i of N, elapsed and time left, and record its duration in `out/timings.jsonl`."""

    def __init__(self, seeds: int, clock: Callable[[], float] = time.monotonic, echo: Callable[[str], None] = log,
                 expected_seed_seconds: float | None = None):
        """`expected_seed_seconds`: what a seed took where a committed record of it was made, the estimate of
        the time left until this run has measured a seed of its own."""
        self.seeds, self.clock, self.echo = seeds, clock, echo
        self.expected = expected_seed_seconds
        self.seed_start: float | None = None
        self.start = clock()
        self.seed_index: int | None = None  # None: a step outside the seeds (the base)
        self.position = 0
        self.per_seed: int | None = None
        self.measured: dict[int, list[float]] = {}
        self.made: set[Path] = set()  # folders this run's steps wrote
        # every step this run passed through, run or reused: a folder may also hold the steps of another
        # preset (the planner's), whose times are no part of this run's seeds
        self.names: set[str] = set()

    def begin_seed(self, index: int) -> None:
        if self.seed_index is not None:
            self.per_seed = self.position
        self.seed_index, self.position = index, 0
        self.seed_start = self.clock()

    def __call__(self, out: Path, folder: Path, message: str, work: Callable[[], object],
                 covers: Path | None = None, also: tuple[Path, ...] = ()) -> None:
        """`folder` is the step's proof of completion; `covers` (default: `folder`) what it wrote, recorded and
        checked (a step whose proof is one file among the results it keeps in a folder); `also` what else it
        leaves (its scratch), listed as rejuv's in the demo's marker but not checked."""
        self.names.add(message)
        if self.seed_index is not None:
            self.position += 1
        if folder in self.made:
            # written by an earlier step of this run (a start that reuses an arm's run): it costs nothing,
            # every seed alike; a folder from an earlier run says nothing about what the step costs
            if self.seed_index is not None:
                self.measured.setdefault(self.position, []).append(0.0)
            return
        covers = covers or folder
        if folder.exists():
            problem = damage(out, covers)
            if problem is None:  # as its step wrote it: rejuv's (a marker of an older rejuv did not list it)
                mark_written(out, "demo", [covers, _record_path(out, covers), *also])
                return
            aside = set_aside(covers)
            self.echo(f"{covers} is not as its step left it ({problem}): set aside as {aside.name}; running the "
                      "step again")
        self.echo(message + self._where())
        start = self.clock()
        work()
        seconds = self.clock() - start
        self.made.add(folder)
        if folder.exists():
            record_step(out, covers)
            mark_written(out, "demo", also)
        if self.seed_index is not None:
            self.measured.setdefault(self.position, []).append(seconds)
        append_timing(out / TIMINGS, message, seconds)
        mark_written(out, "demo", [out / TIMINGS])

    def time_left(self) -> float | None:
        """Seconds left after the current step starts, from the measured times; None while unknown."""
        if self.per_seed is None or self.seed_index is None:
            return None
        later_seeds = self.seeds - self.seed_index - 1
        needed = [(p, 1 + later_seeds) for p in range(self.position, self.per_seed + 1)]
        needed += [(p, later_seeds) for p in range(1, self.position)]
        if any(n and p not in self.measured for p, n in needed):
            return None
        return sum(n * sum(self.measured[p]) / len(self.measured[p]) for p, n in needed if n)

    def guessed_left(self) -> float | None:
        """Seconds left by the committed record's time for a seed (before this run has measured one): the rest
        of this seed at that pace, and the seeds to come."""
        if self.expected is None or self.seed_index is None or self.seed_start is None:
            return None
        this_seed = self.expected - (self.clock() - self.seed_start)
        if this_seed < 60:
            return None  # past what the record's machine took: no honest estimate left
        return this_seed + (self.seeds - self.seed_index - 1) * self.expected

    def _where(self) -> str:
        if self.seed_index is None:
            if self.expected is None:
                return ""
            return f"  [then about {self.seeds * self.expected / 60:.0f} min for {self.seeds} seed(s), by the " \
                   "committed record's time]"
        of = f" of {self.per_seed}" if self.per_seed else ""
        parts = [f"step {self.position}{of} of the seed", f"{(self.clock() - self.start) / 60:.0f} min in"]
        left = self.time_left()
        guessed = self.guessed_left() if left is None else None
        if left is not None:
            parts.append(f"about {left / 60:.0f} min left")
        elif guessed is not None:
            parts.append(f"about {guessed / 60:.0f} min left, by the committed record's time")
        elif self.expected is not None:
            parts.append(f"past the committed record's {self.expected / 60:.0f} min for the seed: this machine is "
                         "slower")
        return f"  [{'; '.join(parts)}]"
