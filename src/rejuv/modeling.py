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


def config_positions(path: str, adapter_base: str | None = None) -> int | None:
    """`model_positions` of a model folder, or of an adapter's base."""
    from rejuv.io.adapter import base_folder_of, is_adapter
    from rejuv.io.records import read_json

    folder = base_folder_of(path, adapter_base, progress=False) if is_adapter(path) else path
    return model_positions(read_json(Path(folder) / "config.json", "model config"), path)


def adapter_base_option() -> Any:
    """The `base` of a command that takes PEFT adapters among other models (eval, rl)."""
    from rejuv.options import option

    return option(None, help="Base model of any PEFT LoRA adapter given (a folder or Hub ID).", path="checkpoint",
                  default_text="the base each adapter names (base_model_name_or_path)")


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


def load_model(path: str | Path, dtype: Any = "float32", *, device_map: Any = None, trust_remote_code: bool = False,
               allow_pickle: bool = False, progress: bool = True, adapter_base: str | None = None, **kwargs: Any):
    """The one way rejuv opens a model with transformers (passes, evaluation, training): the folder checked
    first (`check_model_path`), then loaded, and refused unless it loaded completely: transformers' loading
    report must be empty (no tensor the config's model needs is missing and initialised at random, none is
    left over, none has another shape) and every parameter finite. Each refusal is one line naming the
    checkpoint and what is wrong. `kwargs` go to `from_pretrained` (a trainer's `model_init_kwargs`).

    A PEFT LoRA adapter loads as its fine-tuned model: its base (`adapter_base`, else the one it names),
    loaded as above, with θ_base + s·B·A written into the tensors it updates, in the base's stored dtype
    (`rejuv.io.adapter.LoraCheckpoint`: the values a merged copy would hold)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from rejuv.io.adapter import base_folder_of, is_adapter, open_checkpoint

    if is_adapter(path):
        base = base_folder_of(path, adapter_base, allow_pickle, progress)
        model = load_model(base, dtype, device_map=device_map, trust_remote_code=trust_remote_code,
                           allow_pickle=allow_pickle, progress=progress, **kwargs)
        merge_into(model, open_checkpoint(path, allow_pickle, base))
        return model
    check_model_path(str(path), trust_remote_code, allow_pickle)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = dtype_from_name(dtype)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its loading report is ours to state, in one line
    try:
        with loading_bars(progress):
            model, info = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, trust_remote_code=trust_remote_code, device_map=device_map,
                use_safetensors=None if allow_pickle else True, output_loading_info=True,
                ignore_mismatched_sizes=True, **kwargs)  # a mismatch is reported below, by tensor
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise RejuvError(f"{path}: cannot be loaded as a causal LM ({_first_line(exc)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    check_loading_report(path, info)
    check_finite_parameters(path, model)
    return model


def merge_into(model, sft) -> None:
    """Write the fine-tuned values of an adapter's tensors (`sft`, a `LoraCheckpoint`) into its loaded base."""
    import torch

    from rejuv.io.format import as_torch, rows_of

    with sft, torch.no_grad():
        params = dict(model.named_parameters(remove_duplicate=False))
        for name in sft.adapter.pairs:
            param = params.get(name)
            if param is None:
                raise RejuvError(f"{sft.path}: updates {name}, which is no parameter of the loaded base model")
            merged = sft.read_array(name, 0, rows_of(sft.tensors[name].shape))
            param.copy_(as_torch(merged).to(param.device, param.dtype))
        check_finite_parameters(sft.path, model)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _some(names, count: int = 3) -> str:
    from rejuv.io.format import natural_key

    names = sorted(names, key=natural_key)
    return ", ".join(names[:count]) + (f" and {len(names) - count} more" if len(names) > count else "")


def check_loading_report(path: str | Path, info: dict) -> None:
    """Refuse a model that did not load completely, from transformers' loading report."""
    mismatched = sorted(info.get("mismatched_keys") or ())
    if mismatched:
        name, found, wanted = mismatched[0]
        raise RejuvError(f"{path}: tensor {name} is {list(found)} in the checkpoint, but the config's model needs "
                         f"{list(wanted)}" + (f" ({len(mismatched) - 1} more differ)" if len(mismatched) > 1 else "")
                         + "; config.json does not describe these weights")
    missing = info.get("missing_keys") or ()
    if missing:
        raise RejuvError(f"{path}: the checkpoint lacks {len(missing)} tensor(s) the config's model needs "
                         f"({_some(missing)}), which transformers would initialise at random; config.json does "
                         "not describe these weights (a missing or wrong num_hidden_layers?)")
    unexpected = info.get("unexpected_keys") or ()
    if unexpected:
        raise RejuvError(f"{path}: the checkpoint holds {len(unexpected)} tensor(s) the config's model has no place "
                         f"for ({_some(unexpected)}), which would be dropped; config.json does not describe these "
                         "weights")
    errors = info.get("error_msgs") or ()
    if errors:
        raise RejuvError(f"{path}: cannot be loaded completely ({_first_line(RuntimeError(errors[0]))})")


def check_finite_parameters(path: str | Path, model) -> None:
    """Refuse a model with NaN or infinite weights, naming the first such tensor."""
    import torch

    for name, param in model.named_parameters():
        if param.device.type != "meta" and param.is_floating_point() and not bool(torch.isfinite(param).all()):
            raise RejuvError(f"{path}: tensor {name} holds NaN or infinite values")


def load_frozen_model(path: str | Path, dtype: str = "float32", device: str | None = None,
                      trust_remote_code: bool = False, allow_pickle: bool = False, progress: bool = True,
                      adapter_base: str | None = None):
    """A causal LM in eval mode with parameters that need no gradients (`load_model`).

    `device=None` puts it on the GPU when there is one, else on the CPU; `device="auto"` lets
    accelerate place layers over every GPU and then CPU memory (for a model larger than one GPU);
    the passes follow the placement.
    """
    device = resolve_device(device)
    model = load_model(path, dtype, device_map="auto" if device == "auto" else None,
                       trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, progress=progress,
                       adapter_base=adapter_base)
    if device != "auto":
        model = model.to(device)
    return model.eval().requires_grad_(False)


def check_model_path(path: str, trust_remote_code: bool = False, allow_pickle: bool = False) -> None:
    """Fail before any work when `path` is not a model folder transformers can read: no or an unreadable
    config.json, a number in it that is NaN or infinite, weights that are cut, overlap or lie outside the
    folder (every safetensors header checked against its file's size), or only pickle weights
    (`pytorch_model*.bin`, which can run code when loaded) while `allow_pickle` is off."""
    from transformers import AutoConfig

    from rejuv.io.adapter import LoraAdapter, is_adapter
    from rejuv.io.reader import Checkpoint

    folder = Path(path)
    if is_adapter(folder):
        LoraAdapter(folder, allow_pickle).close()  # its config and weights, checked; its base where it is loaded
        return
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise RejuvError(f"{path}: not a model folder (no config.json); give a save_pretrained checkpoint")
    if not any(folder.glob("*.safetensors")) and any(folder.glob("*.bin")) and not allow_pickle:
        raise RejuvError(pickle_refused(path))
    Checkpoint(folder, allow_pickle=allow_pickle).close()  # config.json, every header and index, checked
    try:
        AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises many types for a malformed config
        raise RejuvError(f"{path}: config.json cannot be read as a transformers config ({_first_line(exc)})") from exc


def tokenizer_folder(path: str, adapter_base: str | None = None, allow_pickle: bool = False) -> str:
    """Where a model's tokenizer is: its folder, or for an adapter saved without one, its base's."""
    from rejuv.io.adapter import base_folder_of, is_adapter

    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if is_adapter(path) and not any((Path(path) / name).is_file() for name in tokenizer_files):
        return base_folder_of(path, adapter_base, allow_pickle, progress=False)
    return path


def load_tokenizer(path: str, trust_remote_code: bool = False, adapter_base: str | None = None):
    from transformers import AutoTokenizer

    path = tokenizer_folder(path, adapter_base)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise RejuvError(f"{path}: no usable tokenizer in the model folder ({exc})") from exc
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise RejuvError(f"{path}: the tokenizer has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    return tok
