"""Loading a checkpoint as a frozen model for teacher-forced passes (apply, diagnose)."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rejuv.errors import RejuvError
from rejuv.io.format import dtype_from_name
from rejuv.io.reader import pickle_refused

DEFAULT_DEVICE = "cuda when a GPU is visible, else cpu"  # what device None means, in option help


def allow_pickle_option():
    """The `allow_pickle` field of every config whose recipe loads a model: one loading rule, one option."""
    from rejuv.options import option

    return option(False, help="Accept pytorch_model*.bin weights (pickle) when no safetensors exist.", shared=True)


def trust_remote_code_option():
    """The `trust_remote_code` field of every config whose recipe loads a model."""
    from rejuv.options import option

    return option(False, help="Run model code from the checkpoint folders (off: transformers' own code only).",
                  shared=True)


def check_device(device: str | None) -> str | None:
    """None (the default: a GPU when one is visible, else the CPU), `cpu`, `cuda`, `cuda:N`, or `auto`
    (accelerate's device_map: GPUs first, then CPU memory, for a model larger than one GPU)."""
    if device is None:
        return None
    if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise RejuvError(f"expected cpu, cuda, cuda:N or auto, got {device!r}")
    if device.startswith("cuda"):
        import torch  # only here: validating `cpu` must not cost a torch import

        if not torch.cuda.is_available():
            raise RejuvError(f"{device!r} asked for, but no CUDA device is available")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise RejuvError(f"{device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


_DEVICE_HELP = "cpu, cuda, cuda:N, or auto (accelerate's device map over GPUs then CPU)."
_DTYPE_HELP = "Compute dtype of the passes (scores and statistics accumulate in float32)."


def device_option(help: str = _DEVICE_HELP) -> Any:  # noqa: A002
    """The `device` field of every config that runs a model: one meaning, one check."""
    from rejuv.options import option

    return option(None, help=help, default_text=DEFAULT_DEVICE, check=check_device, shared=True)


COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def compute_dtype_option(help: str = _DTYPE_HELP, affects: str | tuple[str, ...] = ()) -> Any:  # noqa: A002
    """The `dtype` of the teacher-forced passes (apply, diagnose, plan)."""
    from rejuv.options import option

    return option("float32", choices=COMPUTE_DTYPES, help=help, affects=affects)


def model_positions(config: dict, where: str) -> int | None:
    """How many positions a model takes (`max_position_embeddings`), when its config says; longer sequences
    are truncated to it with a warning, never fed to the model."""
    value = config.get("max_position_embeddings")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise RejuvError(f"{where}: config.json's max_position_embeddings must be an integer ≥ 2, got {value!r}")
    return value


def resolve_device(device: str | None) -> str:
    """The device the passes run on: `device` itself once checked, or for None `cuda` when a GPU is visible."""
    if device is not None:
        return check_device(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def loading_bars(progress: bool) -> Iterator[None]:
    """transformers' and datasets' own bars (loading weights, mapping a dataset) on a terminal with progress
    on; off a terminal they are noise in a log (a second's work drawn as carriage returns), so hidden."""
    import datasets
    from transformers.utils import logging as hf_logging

    show = progress and sys.stderr.isatty()
    bars = [(hf_logging.is_progress_bar_enabled(), hf_logging.disable_progress_bar, hf_logging.enable_progress_bar),
            (datasets.is_progress_bar_enabled(), datasets.disable_progress_bars, datasets.enable_progress_bars)]
    if not show:
        for _, disable, _ in bars:
            disable()
    try:
        yield
    finally:
        for was_on, _, enable in bars:
            if was_on and not show:
                enable()


def load_frozen_model(path: str | Path, dtype: str = "float32", device: str | None = None,
                      trust_remote_code: bool = False, allow_pickle: bool = False, progress: bool = True):
    """A causal LM in eval mode with parameters that need no gradients.

    `device=None` puts it on the GPU when there is one, else on the CPU; `device="auto"` lets
    accelerate place layers over every GPU and then CPU memory (for a model larger than one GPU);
    the passes follow the placement.
    """
    from transformers import AutoModelForCausalLM

    device = resolve_device(device)
    try:
        with loading_bars(progress):
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype_from_name(dtype), trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True, device_map="auto" if device == "auto" else None)
    except (OSError, ValueError) as exc:
        raise RejuvError(f"{path}: cannot be loaded as a causal LM ({exc})") from exc
    if device != "auto":
        model = model.to(device)
    return model.eval().requires_grad_(False)


def check_model_path(path: str, trust_remote_code: bool = False, allow_pickle: bool = False) -> None:
    """Fail before any work when `path` is not a model folder transformers can read, or holds only pickle
    weights (`pytorch_model*.bin`, which can run code when loaded) and `allow_pickle` is off."""
    from transformers import AutoConfig

    folder = Path(path)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise RejuvError(f"{path}: not a model folder (no config.json); give a save_pretrained checkpoint")
    try:
        AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises many types for a malformed config
        raise RejuvError(f"{path}: config.json cannot be read as a transformers config ({exc})") from exc
    if any(folder.glob("*.safetensors")):
        return
    if not any(folder.glob("*.bin")):
        raise RejuvError(f"{path}: no weights (*.safetensors) in the model folder")
    if not allow_pickle:
        raise RejuvError(pickle_refused(path))


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise RejuvError(f"{path}: no usable tokenizer in the model folder ({exc})") from exc
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise RejuvError(f"{path}: the tokenizer has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok
