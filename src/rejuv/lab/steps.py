"""The lab's steps: each runs once (its output folder is the proof it ran), is timed, and says where the
demo stands.

A step is skipped when its folder exists (an interrupted demo resumes there; a step whose folder an
earlier step of the same run wrote costs nothing and is measured as such). Every seed runs the same
steps in the same order, so once one seed has finished its step count is known, and each position's
measured times give the time left: the rest of this seed plus the seeds still to come. Until every
remaining position has been measured (the first seed; a resumed run whose earlier steps were reused),
the log says the elapsed time only, never a guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rejuv.io.jsonl import write_jsonl


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Steps:
    """Callable as `steps(out, folder, message, work)`: run `work()` unless `folder` exists, log the step
    with step i of N, elapsed and time left, and record its duration in `out/timings.jsonl`."""

    def __init__(self, seeds: int, clock: Callable[[], float] = time.monotonic, echo: Callable[[str], None] = log):
        self.seeds, self.clock, self.echo = seeds, clock, echo
        self.start = clock()
        self.seed_index: int | None = None  # None: a step outside the seeds (the base)
        self.position = 0
        self.per_seed: int | None = None
        self.measured: dict[int, list[float]] = {}
        self.made: set[Path] = set()  # folders this run's steps wrote

    def begin_seed(self, index: int) -> None:
        if self.seed_index is not None:
            self.per_seed = self.position
        self.seed_index, self.position = index, 0

    def __call__(self, out: Path, folder: Path, message: str, work: Callable[[], object]) -> None:
        if self.seed_index is not None:
            self.position += 1
        if folder.exists():
            if self.seed_index is not None and folder in self.made:
                # written by an earlier step of this run (a start that reuses an arm's run): it costs nothing,
                # every seed alike; a folder from an earlier run says nothing about what the step costs
                self.measured.setdefault(self.position, []).append(0.0)
            return
        self.echo(message + self._where())
        start = self.clock()
        work()
        seconds = self.clock() - start
        self.made.add(folder)
        if self.seed_index is not None:
            self.measured.setdefault(self.position, []).append(seconds)
        write_jsonl(out / "timings.jsonl", [{"step": message, "seconds": round(seconds, 2)}], append=True)

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

    def _where(self) -> str:
        if self.seed_index is None:
            return ""
        of = f" of {self.per_seed}" if self.per_seed else ""
        parts = [f"step {self.position}{of} of the seed", f"{(self.clock() - self.start) / 60:.0f} min in"]
        left = self.time_left()
        if left is not None:
            parts.append(f"about {left / 60:.0f} min left")
        return f"  [{'; '.join(parts)}]"
