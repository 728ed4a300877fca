"""Progress of long passes, one rule for every command: a bar on a terminal; elsewhere (a redirected log,
slurm, `accelerate launch`) one line every `REJUV_PROGRESS_EVERY` seconds (30 by default) with done/total,
rate and time left; nothing with `--no-progress`."""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


_last_line = [time.monotonic()]  # when any pass last wrote a line: short passes in a row keep the cadence


class LogLines:
    """The part of tqdm's interface the passes use, written as plain log lines: one whenever `every` seconds
    have passed since the last line of any pass, and a last one for a pass that wrote or outlived one."""

    def __init__(self, total: float | None, desc: str, unit: str, every: float, unit_scale: bool = False, **_):
        self.total, self.desc, self.unit, self.every, self.scale = total, desc, unit, every, unit_scale
        self.done = 0.0
        self.start = time.monotonic()
        self.lines = 0

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
        _last_line[0] = now

    def update(self, n: float = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - _last_line[0] >= self.every:
            self._line(now)

    def close(self) -> None:
        now = time.monotonic()
        if self.lines or now - _last_line[0] >= self.every:
            self._line(now)

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(enabled: bool, total: float | None, desc: str, unit: str = "it", **options):
    """A tqdm bar on a terminal, log lines elsewhere, nothing when `enabled` is False (`--no-progress`)."""
    if enabled and not sys.stderr.isatty():
        return LogLines(total, desc, unit, float(os.environ.get("REJUV_PROGRESS_EVERY", "30")), **options)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False, **options)
