"""rejuv: diagnose and rejuvenate over-trained SFT checkpoints before RL.

Public API (mirrors the CLI):
    rejuv.fuse(base, sft, out, alpha=0.5)                       # fusion only
    rejuv.rejuvenate(base, sft, calib, out, alpha=0.5, rho=0.01)  # fusion + neuron reset
    rejuv.diagnose(base, [ckpt, ...], calib, out)                 # plasticity report
"""

__version__ = "0.1.0"

from rejuv.apply import ApplyConfig, fuse, rejuvenate, run_apply  # noqa: E402
from rejuv.diagnose import diagnose  # noqa: E402
from rejuv.errors import RejuvError  # noqa: E402

__all__ = ["ApplyConfig", "RejuvError", "diagnose", "fuse", "rejuvenate", "run_apply", "__version__"]
