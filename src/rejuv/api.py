"""The Python API: the commands' recipes called with keyword arguments. Every argument is checked as the
command line checks it (the recipes' configs check themselves), and a refusal is the same `RejuvError`."""

from __future__ import annotations

import os

from rejuv.recipes.apply import ApplyConfig, run_apply
from rejuv.recipes.diagnose import DiagnoseConfig, run_diagnose


def fuse(base: str | os.PathLike, sft: str | os.PathLike, out: str | os.PathLike, alpha: float = 0.5,
         calib: str | os.PathLike | None = None, **options) -> dict:
    """θ = α·θ_SFT + (1−α)·θ_base into `out` (no reset). Returns the manifest."""
    return run_apply(ApplyConfig(base=base, sft=sft, out=out, alpha=alpha, calib=calib, fusion_only=True, **options))


def rejuvenate(base: str | os.PathLike, sft: str | os.PathLike, calib: str | os.PathLike,
               out: str | os.PathLike, alpha: float = 0.5, rho: float | str = 0.01, **options) -> dict:
    """Fusion + attribution-guided reset into `out`. Returns the manifest."""
    return run_apply(ApplyConfig(base=base, sft=sft, out=out, calib=calib, alpha=alpha, rho=rho, **options))


def diagnose(base: str | os.PathLike, checkpoints: list[str | os.PathLike], calib: str | os.PathLike,
             out: str | os.PathLike, evaluation: dict | None = None, **options) -> dict:
    """`rejuv diagnose`; `evaluation` holds the sampling options (`samples`, `temperature`, ...). Returns the
    report written to `out/report.json`."""
    return run_diagnose(DiagnoseConfig(base=base, checkpoints=checkpoints, calib=calib, out=out,
                                       evaluation=evaluation or {}, **options))
