"""What the SFT and RL recipes share: device defaults, model/tokenizer checks, saving."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rejuv.data.prompts import chat_template_option
from rejuv.errors import RejuvError, warn
from rejuv.io.format import dtype_from_name
from rejuv.io.jsonl import write_json, write_jsonl
from rejuv.io.output import atomic_output_dir, check_output_free, check_replaceable, write_marker
from rejuv.modeling import allow_pickle_option, loading_bars, trust_remote_code_option
from rejuv.options import (
    Config,
    OptionError,
    option,
    out_option,
    overwrite_option,
    progress_option,
    seed_option,
)
from rejuv.provenance import what_ran


@dataclass
class TrainingConfig(Config):
    """The options `rejuv sft` and `rejuv rl` share; each recipe's config adds its own."""

    model: str = option(help="Starting checkpoint (save_pretrained folder).", path="checkpoint")
    data: str = option(help="Training data: JSONL or parquet.", path="file")
    out: str = out_option()
    learning_rate: float = option(1e-6, help="Peak learning rate (AdamW).", above=0)
    per_device_batch_size: int = option(8, help="Rows (sft) or completions (rl) per device per step.", at_least=1)
    gradient_accumulation_steps: int = option(1, help="Micro-batches per optimizer step.", at_least=1)
    max_grad_norm: float = option(1.0, help="Gradient clipping norm.", above=0)
    chat_template: str = chat_template_option()
    dtype: str = option("auto", choices=("auto", "float32", "bfloat16"), help="Compute dtype; bfloat16 is "
                        "autocast over float32 master weights (GPU).",
                        default_text="auto: bfloat16 on a GPU that has it, else float32")
    master_dtype: str = option("float32", choices=("float32", "bfloat16"), help="Weights the optimizer updates, "
                               "whatever the checkpoint's dtype; bfloat16 is pure bf16 training and loses updates "
                               "below half a bf16 step.")
    save_dtype: str = option("auto", choices=("auto", "float32", "bfloat16", "float16"),
                             help="Dtype of the saved weights.", default_text="auto: the input checkpoint's")
    gradient_checkpointing: bool = option(False, help="Recompute activations in the backward pass (less memory).")
    lora: bool = option(False, help="Train LoRA adapters (merged into the saved model).")
    lora_r: int = option(16, help="LoRA rank.", at_least=1)
    lora_alpha: int = option(32, help="LoRA scaling numerator.", at_least=1)
    seed: int = seed_option("Seed of data order, sampling and initialisation.")
    overwrite: bool = overwrite_option()
    trust_remote_code: bool = trust_remote_code_option()
    allow_pickle: bool = allow_pickle_option()
    progress: bool = progress_option("Progress bar and per-step log lines.")
    report_to: list[str] = option(["none"], commas=True, help="Experiment trackers TRL reports to (trackio, wandb, "
                                  "tensorboard, ...), repeatable or comma-separated; plasticity figures go there "
                                  "too, as plasticity/*.")
    trl_args: dict = option({}, help="Any other field of TRL's config (YAML only).")

    def check(self) -> None:
        owned = sorted(set(self.trl_args) & _PATHS_OWNED)
        if owned:
            raise OptionError("trl_args", f"{owned[0]} names a folder rejuv writes itself (inside --out, renamed "
                              "into place at the end); set --out instead")
        init = self.trl_args.get("model_init_kwargs") or {}
        if not isinstance(init, dict):
            raise OptionError("trl_args", f"model_init_kwargs must be a mapping, got {init!r}")
        for key, option_name in _LOADING_OWNED.items():
            if key in init:
                raise OptionError("trl_args", f"model_init_kwargs.{key} is rejuv's to set (the model is loaded "
                                  f"and checked by rejuv); use {option_name}")


# TRL fields that name where the trainer writes: rejuv sets them inside its temporary output, so that the
# output guard covers everything a run writes.
_PATHS_OWNED = {"output_dir", "logging_dir"}
# How the starting model is loaded: rejuv's options, not TRL's `model_init_kwargs`.
_LOADING_OWNED = {"dtype": "--master-dtype", "torch_dtype": "--master-dtype", "trust_remote_code":
                  "--trust-remote-code", "use_safetensors": "--allow-pickle", "output_loading_info": "nothing",
                  "ignore_mismatched_sizes": "nothing"}


@dataclass(frozen=True)
class StartModel:
    """Where a training run starts and how it is loaded (`training_model`)."""

    model: str  # a model folder or a PEFT adapter (local: resolved before the run)
    trust_remote_code: bool = False
    allow_pickle: bool = False
    progress: bool = True
    base: str | None = None  # an adapter's base (default: the one it names)
    continue_adapter: bool = False  # train the adapter itself, not its merged model
    init_kwargs: dict = field(default_factory=dict)  # TRL's `model_init_kwargs` from `trl_args`


def training_model(start: StartModel, args, precision: Precision):
    """The starting model, loaded (and checked complete) by `rejuv.modeling.load_model` in the master dtype,
    placed as TRL places a model it loads itself (one GPU: `device_map="auto"`; CPU and distributed
    launches: none, the trainer moves it), with any other `model_init_kwargs`."""
    from accelerate import PartialState

    from rejuv.modeling import load_model

    kwargs = dict(start.init_kwargs)
    if args.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
        kwargs["device_map"] = None
    kwargs.setdefault("device_map", None if PartialState().device.type in ("cpu", "mps") else "auto")
    loading = dict(trust_remote_code=start.trust_remote_code, allow_pickle=start.allow_pickle,
                   progress=start.progress, **kwargs)
    if start.continue_adapter:  # the adapter itself is trained: PEFT's model over its base
        from peft import PeftModel

        from rejuv.io.adapter import base_folder_of

        base = load_model(base_folder_of(start.model, start.base, start.allow_pickle), precision.master, **loading)
        return PeftModel.from_pretrained(base, start.model, is_trainable=True)
    return load_model(start.model, precision.master, adapter_base=start.base, **loading)


def start_model(cfg: TrainingConfig) -> StartModel:
    """The starting model of a run, from the options `rejuv sft` and `rejuv rl` share (and rl's own)."""
    return StartModel(cfg.model, cfg.trust_remote_code, cfg.allow_pickle, cfg.progress, getattr(cfg, "base", None),
                      getattr(cfg, "continue_adapter", False), dict(cfg.trl_args.get("model_init_kwargs") or {}))


def distributed_state():
    """accelerate's process state, set up as the trainer will set it up (CPU runs use gloo).

    The state is a singleton: created first without `cpu=True`, a `torchrun`
    launch on CPUs would be taken for a single process by the trainer too.
    """
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


@contextlib.contextmanager
def training_output_dir(out: Path, overwrite: bool, command: str) -> Iterator[Path]:
    """`atomic_output_dir`, shared by every process of an `accelerate launch` run.

    One process alone uses the usual per-pid temporary folder. Several agree on
    one folder named after the rendezvous port; the main process creates it and
    renames it into place once all have finished.
    """
    state = distributed_state()
    if state.num_processes == 1:
        with atomic_output_dir(out, overwrite, command=command) as tmp:
            yield tmp
        return
    check_output_free(out, overwrite, command=command)
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
        write_marker(tmp, command)
        if out.exists():
            check_replaceable(out, command)
            shutil.rmtree(out)
        os.replace(tmp, out)
    state.wait_for_everyone()


@dataclass(frozen=True)
class Precision:
    """How a recipe trains and saves: the weights the optimizer updates, the compute dtype, the saved dtype.

    `master` float32 keeps every update, however small; bfloat16 weights (asked for explicitly) lose any
    update below half a bf16 step of the weight (2^-9 of its magnitude). bfloat16 compute over float32
    master weights is autocast (mixed precision), as TrainingArguments' `bf16` does it.
    """

    master: str  # float32 | bfloat16
    compute: str  # float32 | bfloat16
    saved: str  # dtype of the saved weights

    @property
    def autocast(self) -> bool:
        return self.compute == "bfloat16" and self.master == "float32"

    def describe(self) -> dict:
        return {"master_weights": self.master,
                "compute": "bfloat16 autocast" if self.autocast else self.compute, "saved": self.saved}

    def statement(self, templated: bool) -> dict:
        """What a training run states about itself in its summary and config file."""
        return {"precision": self.describe(), "chat_template_used": templated}


_FLOAT_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
                "float16": "float16", "fp16": "float16"}


def checkpoint_float_dtype(path: str, adapter_base: str | None = None) -> str:
    """The dtype most of a checkpoint's floating-point bytes are stored in (float32 when it cannot tell); an
    adapter's are its base's."""
    from rejuv.io.adapter import base_folder_of, is_adapter
    from rejuv.io.format import dtype_from_name
    from rejuv.io.reader import Checkpoint

    if is_adapter(path):
        path = base_folder_of(path, adapter_base, progress=False)
    try:
        with Checkpoint(path) as ckpt:
            sizes: dict[str, int] = {}
            for info in ckpt.tensors.values():
                if info.dtype in ("F32", "BF16", "F16", "F64"):
                    sizes[info.dtype] = sizes.get(info.dtype, 0) + info.nbytes
        if sizes:
            return str(dtype_from_name(max(sizes, key=sizes.get))).removeprefix("torch.")
    except RejuvError:  # pickle-only weights: fall back to the config
        pass
    config = json.loads((Path(path) / "config.json").read_text())
    stated = config.get("dtype") or config.get("torch_dtype")
    return _FLOAT_NAMES.get(str(stated), "float32")


def training_precision(dtype: str, master_dtype: str, save_dtype: str, model_path: str,
                       adapter_base: str | None = None) -> Precision:
    """Resolve the precision options; errors name the option.

    dtype (compute): auto = bfloat16 autocast on a GPU that has it, else float32; bfloat16 needs CUDA.
    master_dtype: float32 (default, whatever the checkpoint's dtype) or bfloat16 (pure bf16 training).
    save_dtype: auto = the input checkpoint's dtype.
    """
    cuda = torch.cuda.is_available()
    compute = _FLOAT_NAMES.get(dtype, dtype)
    if compute == "auto":
        compute = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"
    elif compute == "bfloat16" and not cuda and master_dtype != "bfloat16":
        raise RejuvError("dtype bfloat16 (mixed precision) needs a CUDA device; use float32 on the CPU")
    elif compute not in ("float32", "bfloat16"):
        raise RejuvError(f"dtype must be auto, float32 or bfloat16, got {dtype!r}")
    master = _FLOAT_NAMES.get(master_dtype)
    if master not in ("float32", "bfloat16"):
        raise RejuvError(f"master_dtype must be float32 or bfloat16, got {master_dtype!r}")
    if master == "bfloat16":
        compute = "bfloat16"
    saved = checkpoint_float_dtype(model_path, adapter_base) if save_dtype == "auto" else _FLOAT_NAMES.get(save_dtype)
    if saved is None:
        raise RejuvError(f"save_dtype must be auto, float32, bfloat16 or float16, got {save_dtype!r}")
    return Precision(master, compute, saved)


def device_defaults(precision: Precision) -> dict:
    """TrainingArguments that just work on the machine at hand (CPU: no bf16, no pinned memory)."""
    cuda = torch.cuda.is_available()
    return {"bf16": precision.autocast, "fp16": False, "use_cpu": not cuda, "dataloader_pin_memory": cuda,
            "save_strategy": "no", "disable_tqdm": False}


def make_trl_config(config_cls, values: dict, extra: dict | None, what: str):
    """Build a TRL config; `extra` (YAML `trl_args`) may set any other field of it (`model_init_kwargs` go to
    `training_model`, which loads the model)."""
    merged = {**values, **{k: v for k, v in (extra or {}).items() if k != "model_init_kwargs"}}
    try:
        return config_cls(**merged)
    except TypeError as exc:
        raise RejuvError(f"{what}: {exc} (see the {config_cls.__name__} documentation for valid trl_args)") from exc
    except ValueError as exc:
        raise RejuvError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class Optimisation:
    """How both trainers step: what `shared_trainer_args` turns into TRL's config, and the LoRA to train."""

    learning_rate: float
    per_device_batch_size: int
    gradient_accumulation_steps: int
    max_grad_norm: float
    seed: int
    gradient_checkpointing: bool = False
    report_to: tuple[str, ...] = ("none",)
    trust_remote_code: bool = False
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32


def shared_trainer_args(opt: Optimisation, tmp: Path, precision: Precision) -> dict:
    """TrainingArguments both recipes set the same way.

    The model is loaded in the master dtype, whatever the checkpoint's (`training_model`): a bf16 checkpoint
    trained with float32 master weights starts from exactly its bf16 values.
    """
    return dict(
        output_dir=str(tmp / "trainer"), learning_rate=opt.learning_rate,
        per_device_train_batch_size=opt.per_device_batch_size,
        gradient_accumulation_steps=opt.gradient_accumulation_steps, max_grad_norm=opt.max_grad_norm,
        seed=opt.seed, data_seed=opt.seed, activation_checkpointing=opt.gradient_checkpointing, logging_steps=1,
        report_to=list(opt.report_to), trust_remote_code=opt.trust_remote_code,
        **device_defaults(precision),
    )


def lora_config(opt: Optimisation):
    """LoRA on every linear layer when the run asks for it, else None."""
    if not opt.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=opt.lora_r, lora_alpha=opt.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")


@contextlib.contextmanager
def quiet_libraries(progress: bool) -> Iterator[None]:
    """While a recipe trains: hide a deprecation warning TRL and PEFT trigger inside transformers
    (`is_gradient_checkpointing` is deprecated: theirs to fix, and it tells a user nothing), and the bars
    transformers and datasets draw for loading, preparing and saving, unless on a terminal with progress on."""
    import warnings

    with warnings.catch_warnings(), loading_bars(progress):
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)
        yield


def silence(trainer) -> None:
    """Drop the trainer's progress bar and per-step log printing (the logs are still recorded)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)


def finish_run(trainer, tmp: Path, record: dict, config_name: str, stated: dict, vllm: bool = False) -> None:
    """Write the log history and the run's `record` (the recipe's options as recorded) with what was `stated`
    about it (precision, prompts) and what ran; drop the trainer's scratch folder."""
    if trainer.accelerator.is_main_process:
        write_jsonl(tmp / "train_log.jsonl", trainer.state.log_history)
        engine = f"TRL {type(trainer).__name__}" + (" with vLLM" if vllm else "")
        ran = what_ran(str(trainer.accelerator.device), stated["precision"]["compute"], engine)
        write_json(tmp / config_name, {**record, **stated, "ran": ran})
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def cast_state_dict(state: dict, dtype: torch.dtype) -> dict:
    """Floating-point tensors in `dtype`; tensors that share memory (tied embeddings) stay shared."""
    cast: dict = {}
    out = {}
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            out[name] = tensor
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in cast:
            cast[key] = tensor.to(dtype)
        out[name] = cast[key]
    return out


def kept_when_saved(state: dict, start: str, dtype: torch.dtype, adapter_base: str | None = None) -> float | None:
    """The share of the entries a run changed (in its float32 master weights) that still differ from the
    start once saved in `dtype`; the rest moved less than half a step of `dtype` and are lost on saving.
    None when nothing is lost by construction (saved in float32 or wider) or the start cannot be read."""
    if dtype.itemsize >= 4:
        return None
    from rejuv.io.adapter import open_checkpoint

    changed = kept = 0
    try:
        with open_checkpoint(start, base=adapter_base) as ckpt:
            for name, tensor in state.items():
                info = ckpt.tensors.get(name)
                if not tensor.is_floating_point() or info is None or tuple(info.shape) != tuple(tensor.shape):
                    continue
                begin, now = ckpt.read(name).to(tensor.device, torch.float32), tensor.float()
                moved = now != begin
                changed += int(moved.sum())
                kept += int((moved & (now.to(dtype).float() != begin)).sum())
    except RejuvError:  # pickle-only weights: nothing to compare against without loading them
        return None
    return kept / changed if changed else None


def say_what_saving_kept(kept: float | None, dtype: str, what: str) -> None:
    """Warn when saving in a narrow dtype lost most of what a (short) run changed."""
    if kept is not None and kept < 0.5:
        warn(f"{what}: saved in {dtype}, the weights keep {kept:.1%} of the entries this run changed; the rest "
             f"moved less than half a {dtype} step and are lost (a short run or a small learning rate): pass "
             "--save-dtype float32 to keep them")


def save_model(trainer, folder: Path, dtype: str, merge_lora: bool = True, start: str | None = None,
               adapter_base: str | None = None) -> float | None:
    """A full, loadable checkpoint in `dtype` (LoRA adapters merged) plus the tokenizer; returns, when `start`
    (the checkpoint training began from) is given, the share of the changed entries the saved copy keeps
    (`kept_when_saved`).

    Called by every process: under ZeRO-3 or FSDP, gathering the state dict is collective.
    The live model keeps its master weights; only the saved copy is cast.
    """
    accelerator = trainer.accelerator
    model = accelerator.unwrap_model(trainer.model)
    if merge_lora and hasattr(model, "merge_and_unload"):
        import copy

        target = copy.deepcopy(model).merge_and_unload() if accelerator.is_main_process else None
        state = target.state_dict() if target is not None else None
    else:
        target, state = model, accelerator.get_state_dict(trainer.model_wrapped)
    if accelerator.is_main_process:
        target.save_pretrained(folder, state_dict=cast_state_dict(state, dtype_from_name(dtype)))
        config_file = Path(folder) / "config.json"  # save_pretrained states the live model's dtype
        config = json.loads(config_file.read_text())
        config["dtype"] = dtype
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        trainer.processing_class.save_pretrained(folder)
    kept = kept_when_saved(state, start, dtype_from_name(dtype), adapter_base) \
        if start and accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return kept


def save_adapter(trainer, folder: Path, base_name: str | None) -> None:
    """The trained PEFT adapter (its config and weights, as PEFT saves them) plus the tokenizer, naming the base
    it was trained over as given (a Hub ID rather than the cache folder it was read from). Returns None: what
    saving keeps is PEFT's own dtype choice."""
    from rejuv.io.adapter import ADAPTER_CONFIG

    accelerator = trainer.accelerator
    model = accelerator.unwrap_model(trainer.model)
    state = accelerator.get_state_dict(trainer.model_wrapped)
    if accelerator.is_main_process:
        model.save_pretrained(folder, state_dict=state)
        config_file = Path(folder) / ADAPTER_CONFIG
        config = json.loads(config_file.read_text())
        if base_name is not None:
            config["base_model_name_or_path"], _, revision = base_name.partition("@")
            config["revision"] = revision or None
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        trainer.processing_class.save_pretrained(folder)
    accelerator.wait_for_everyone()
    return None


def save_epoch_list(values: list[float]) -> list[float]:
    """The epochs to save, sorted and distinct."""
    return sorted({float(x) for x in values})


def epoch_dir_name(epoch: float) -> str:
    """The folder `rejuv sft` saves an epoch in: `epoch-2`, `epoch-0.5`."""
    return f"epoch-{int(epoch)}" if float(epoch).is_integer() else f"epoch-{epoch:g}"
