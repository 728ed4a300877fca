"""What the SFT and RL recipes share: device defaults, model/tokenizer checks, saving."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch

from rejuv.checkpoint import atomic_output_dir, check_output_free
from rejuv.errors import RejuvError


def distributed_state():
    """accelerate's process state, set up as the trainer will set it up (CPU runs use gloo).

    The state is a singleton: created first without `cpu=True`, a `torchrun`
    launch on CPUs would be taken for a single process by the trainer too.
    """
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


@contextlib.contextmanager
def training_output_dir(out: Path, overwrite: bool) -> Iterator[Path]:
    """`atomic_output_dir`, shared by every process of an `accelerate launch` run.

    One process alone uses the usual per-pid temporary folder. Several agree on
    one folder named after the rendezvous port; the main process creates it and
    renames it into place once all have finished.
    """
    state = distributed_state()
    if state.num_processes == 1:
        with atomic_output_dir(out, overwrite) as tmp:
            yield tmp
        return
    check_output_free(out, overwrite)
    tmp = out.parent / f".{out.name}.rejuv-tmp-dist{os.environ.get('MASTER_PORT', '0')}"
    if state.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    state.wait_for_everyone()
    try:
        yield tmp
    except BaseException:
        if state.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    state.wait_for_everyone()
    if state.is_main_process:
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    state.wait_for_everyone()


def check_model_path(path: str, trust_remote_code: bool = False) -> None:
    """Fail before training when `path` is not a model folder transformers can read."""
    from transformers import AutoConfig

    folder = Path(path)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise RejuvError(f"{path}: not a model folder (no config.json); give a save_pretrained checkpoint")
    try:
        AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise RejuvError(f"{path}: config.json cannot be read as a transformers config ({exc})") from exc
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise RejuvError(f"{path}: no weights (*.safetensors) in the model folder")


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


def device_defaults(dtype: str = "auto") -> dict:
    """TrainingArguments that just work on the machine at hand (CPU: no bf16, no pinned memory)."""
    cuda = torch.cuda.is_available()
    if dtype == "auto":
        bf16 = cuda and torch.cuda.is_bf16_supported()
    elif dtype in ("bfloat16", "bf16"):
        if not cuda:
            raise RejuvError("dtype bfloat16 training asked for, but there is no CUDA device; use float32")
        bf16 = True
    elif dtype in ("float32", "fp32"):
        bf16 = False
    else:
        raise RejuvError(f"training dtype must be auto, bfloat16 or float32, got {dtype!r}")
    return {"bf16": bf16, "fp16": False, "use_cpu": not cuda, "dataloader_pin_memory": cuda,
            "report_to": "none", "save_strategy": "no", "disable_tqdm": False}


def make_trl_config(config_cls, values: dict, extra: dict | None, what: str):
    """Build a TRL config; `extra` (YAML `trl_args`) may set any other field of it."""
    merged = {**values, **(extra or {})}
    try:
        return config_cls(**merged)
    except TypeError as exc:
        raise RejuvError(f"{what}: {exc} (see the {config_cls.__name__} documentation for valid trl_args)") from exc
    except ValueError as exc:
        raise RejuvError(f"{what}: {exc}") from exc


def shared_trainer_args(cfg, tmp: Path) -> dict:
    """TrainingArguments both recipes set the same way (cfg: an SFT or RL recipe config)."""
    return dict(
        output_dir=str(tmp / "trainer"), learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed, data_seed=cfg.seed, activation_checkpointing=cfg.gradient_checkpointing, logging_steps=1,
        model_init_kwargs={"trust_remote_code": cfg.trust_remote_code, "dtype": "auto"},
        **device_defaults(cfg.dtype),
    )


def lora_config(cfg):
    """LoRA on every linear layer when the recipe asks for it, else None."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")


def silence(trainer) -> None:
    """Drop the trainer's progress bar and per-step log printing (the logs are still recorded)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)


def finish_run(trainer, tmp: Path, cfg, config_name: str) -> None:
    """Write the log history and the recipe config; drop the trainer's scratch folder."""
    if trainer.accelerator.is_main_process:
        write_jsonl(tmp / "train_log.jsonl", trainer.state.log_history)
        write_json(tmp / config_name, cfg)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def write_json(path: Path, obj) -> None:
    if is_dataclass(obj):
        obj = asdict(obj)
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, default=float) + "\n")


def save_model(trainer, folder: Path, merge_lora: bool = True) -> None:
    """A full, loadable checkpoint (LoRA adapters merged) plus the tokenizer."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if merge_lora and hasattr(model, "merge_and_unload"):
        if trainer.accelerator.is_main_process:
            import copy

            merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(folder)
            trainer.processing_class.save_pretrained(folder)
        trainer.accelerator.wait_for_everyone()
        return
    trainer.save_model(str(folder))
    if trainer.accelerator.is_main_process:
        # The trainer pickles its arguments next to the weights; outputs stay pickle-free.
        (Path(folder) / "training_args.bin").unlink(missing_ok=True)
