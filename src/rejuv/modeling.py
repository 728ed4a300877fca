"""Loading a checkpoint as a frozen model for teacher-forced passes (apply, diagnose)."""

from __future__ import annotations

from pathlib import Path

from rejuv.checkpoint import dtype_from_name
from rejuv.errors import RejuvError


def load_frozen_model(path: str | Path, dtype: str = "float32", device: str = "cpu", trust_remote_code: bool = False,
                      allow_pickle: bool = False, progress: bool = True):
    """A causal LM in eval mode with parameters that need no gradients."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    quiet = not progress and hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype_from_name(dtype), trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True)
    except (OSError, ValueError) as exc:
        raise RejuvError(f"{path}: cannot be loaded as a causal LM ({exc})") from exc
    finally:
        if quiet:
            hf_logging.enable_progress_bar()
    return model.to(device).eval().requires_grad_(False)
