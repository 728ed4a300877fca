"""Progress of long passes, one rule for every command: a bar on a terminal; elsewhere (a redirected log,
slurm, `accelerate launch`) one line every `REJUV_PROGRESS_EVERY` seconds (30 by default) with done/total,
rate and time left. With `--no-progress`, no bar, but a long pass is never silent: a line every ten times
that interval (5 minutes), and one when a pass that lasted twice the interval (1 minute) ends, so a long
quiet run cannot be taken for a hang."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

from tqdm.auto import tqdm


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


_last_line = [time.monotonic()]  # when any pass last wrote a line: short passes in a row keep the cadence


class LogLines:
    """The part of tqdm's interface the passes use, written as plain log lines: one whenever `every` seconds
    have passed since the last line of any pass, and a last one (unless the last line already said it all)
    for a pass that wrote one or outlived `every` since the last line of any pass; with `last_after`, instead,
    for a pass that wrote one or lasted `last_after` seconds itself."""

    def __init__(self, total: float | None, desc: str, unit: str, every: float, unit_scale: bool = False,
                 last_after: float | None = None, **_):
        self.total, self.desc, self.unit, self.every, self.scale = total, desc, unit, every, unit_scale
        self.last_after = last_after
        self.done = 0.0
        self.start = time.monotonic()
        self.lines = 0
        self.said: float | None = None  # `done` when the last line was written

    def _amount(self, value: float) -> str:
        if not self.scale:
            return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"
        for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
            if abs(value) < 1024 or prefix == "Ti":
                return f"{value:.1f} {prefix}"
            value /= 1024
        return f"{value:g}"

    def _line(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.desc}: {self._amount(self.done)}"
        if self.total:
            text += f"/{self._amount(self.total)} {self.unit} ({self.done / self.total:.0%})"
            left = (self.total - self.done) / rate if rate > 0 else None
            text += f", {self._amount(rate)} {self.unit}/s, elapsed {_duration(elapsed)}"
            text += f", left {_duration(left)}" if left is not None else ""
        else:
            text += f" {self.unit}, {self._amount(rate)} {self.unit}/s, elapsed {_duration(elapsed)}"
        print(text, file=sys.stderr, flush=True)
        self.lines += 1
        self.said = self.done
        _last_line[0] = now

    def update(self, n: float = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - _last_line[0] >= self.every:
            self._line(now)

    def close(self) -> None:
        now = time.monotonic()
        if self.said == self.done:
            return  # the last line already said where the pass ended
        long = now - self.start >= self.last_after if self.last_after is not None else now - _last_line[0] >= self.every
        if self.lines or long:
            self._line(now)

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_SILENT = [False]


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No progress at all inside the block, not even `--no-progress`'s sparse lines: for a caller that says
    where it stands itself (the lab's steps, with their time left)."""
    before, _SILENT[0] = _SILENT[0], True
    try:
        yield
    finally:
        _SILENT[0] = before


def progress_bar(enabled: bool, total: float | None, desc: str, unit: str = "it", **options):
    """A tqdm bar on a terminal, log lines elsewhere; with `enabled` False (`--no-progress`), sparse log lines
    for long passes only; nothing inside `silenced()`."""
    every = float(os.environ.get("REJUV_PROGRESS_EVERY", "30"))
    if _SILENT[0]:
        return tqdm(total=total, desc=desc, unit=unit, disable=True, **options)
    if not enabled:
        return LogLines(total, desc, unit, 10 * every, last_after=2 * every, **options)
    if not sys.stderr.isatty():
        return LogLines(total, desc, unit, every, **options)
    return tqdm(total=total, desc=desc, unit=unit, leave=False, **options)
