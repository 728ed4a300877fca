"""rejuv: diagnose and rejuvenate over-trained SFT checkpoints before RL.

Public API (mirrors the CLI):
    rejuv.fuse(base, sft, out, alpha=0.5)                       # fusion only
    rejuv.rejuvenate(base, sft, calib, out, alpha=0.5, rho=0.01)  # fusion + neuron reset
    rejuv.diagnose(base, [ckpt, ...], calib, out)                 # plasticity report
    rejuv.PlasticityCallback.attach(trainer, ...)                 # signals and the entropy screen in any trainer

The names are imported on first use, so `import rejuv` (and `rejuv --version`, or
`rejuv apply --fusion-only`) does not pay for torch and transformers up front.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {"ApplyConfig": "rejuv.recipes.apply", "fuse": "rejuv.api", "rejuvenate": "rejuv.api",
           "run_apply": "rejuv.recipes.apply", "diagnose": "rejuv.api", "RejuvError": "rejuv.errors",
           "PlasticityCallback": "rejuv.train.plasticity"}

__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'rejuv' has no attribute {name!r}")
