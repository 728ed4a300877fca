"""PEFT LoRA adapters as checkpoints: a folder with `adapter_config.json` and `adapter_model.safetensors`
(as PEFT, TRL, Unsloth and LLaMA-Factory save them) over a base model.

An adapter adds to each target linear weight W (out × in) of its base the low-rank update s·B·A, with A
(r × in), B (out × r) and s = lora_alpha / r (lora_alpha / √r with rank-stabilised scaling; `rank_pattern`
and `alpha_pattern` per module, as PEFT matches them). `LoraCheckpoint` reads the fine-tuned model
θ_SFT = θ_base + s·B·A like any `Checkpoint`, tensor by tensor and row block by row block, so every pass that
streams a checkpoint (fusion, drift) takes an adapter without a merged copy being written, and gives the
low-rank pair itself where the arithmetic can use it (fusion: θ_F = θ_base + α·s·B·A).

What rejuv does not handle is refused by name, before any work: other PEFT methods than LoRA, DoRA, LoRA
on embeddings or on stacked experts, trained biases, `modules_to_save`, initialisations that rewrite the base
(PiSSA, OLoRA, CorDA, LoftQ), and any other option whose merged weights are not θ_base + s·B·A.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rejuv.errors import RejuvError
from rejuv.io.format import as_torch, numpy_dtype, rows_of
from rejuv.io.reader import Checkpoint, non_finite_in, pickle_refused

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
# adapter_config.json keys whose value does not change θ_base + s·B·A (or that rejuv reads itself)
_UNDERSTOOD = {"r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora", "target_modules", "exclude_modules",
               "layers_to_transform", "layers_pattern", "lora_dropout", "init_lora_weights", "inference_mode",
               "task_type", "base_model_name_or_path", "revision", "peft_type", "peft_version", "auto_mapping",
               "megatron_core", "qalora_group_size", "bias", "fan_in_fan_out", "eva_config"}
# what a set key means, for the refusal
_NAMED = {"use_dora": "DoRA (weight-decomposed LoRA: a magnitude vector rescales each merged column)",
          "modules_to_save": "modules_to_save (full copies of modules, e.g. embeddings or the LM head, trained beside "
                             "the adapter)",
          "lora_bias": "a trained LoRA bias (lora_bias)", "layer_replication": "layer replication",
          "target_parameters": "LoRA on parameters (stacked experts)", "trainable_token_indices":
          "trainable tokens", "use_qalora": "QALoRA", "megatron_config": "Megatron parallel layers",
          "alora_invocation_tokens": "activated LoRA (aLoRA: the update applies only after its invocation tokens)",
          "arrow_config": "Arrow routing between adapters", "ensure_weight_tying": "tied adapters on tied embeddings"}
_BASE_REWRITING = ("pissa", "olora", "corda", "loftq", "lora_ga")  # initialisations that change the base weights


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


@dataclass(frozen=True)
class LoraPair:
    """The update of one base tensor: s·B·A (`a`, `b`: the adapter's tensor names)."""

    a: str
    b: str
    rank: int
    scaling: float


class LoraAdapter:
    """A LoRA adapter folder, checked: its config, and a pair (A, B, s) per base tensor it updates."""

    def __init__(self, path: str | Path, allow_pickle: bool = False):
        self.path = Path(path)
        config_file = self.path / ADAPTER_CONFIG
        try:
            self.config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RejuvError(f"{config_file}: not readable JSON ({exc})") from None
        if not isinstance(self.config, dict):
            raise RejuvError(f"{config_file}: expected a JSON object, got {type(self.config).__name__}")
        bad = non_finite_in(self.config)
        if bad:
            raise RejuvError(f"{config_file}: {bad} is not a finite number")
        self._check_variant(config_file)
        weights = self.path / ADAPTER_WEIGHTS
        if not weights.is_file():
            if not (self.path / ADAPTER_PICKLE).is_file():
                raise RejuvError(f"{self.path}: a PEFT adapter without its weights ({ADAPTER_WEIGHTS})")
            if not allow_pickle:
                raise RejuvError(pickle_refused(self.path))
            weights = self.path / ADAPTER_PICKLE
        self.weights = Checkpoint(self.path, weights=[weights])
        self.pairs = self._pairs()

    @property
    def base_ref(self) -> str | None:
        """The base the adapter names (`base_model_name_or_path`), with its `revision` as `@rev` when set."""
        base = self.config.get("base_model_name_or_path")
        revision = self.config.get("revision")
        if not isinstance(base, str) or not base:
            return None
        return f"{base}@{revision}" if isinstance(revision, str) and revision and "@" not in base else base

    def _check_variant(self, where: Path) -> None:
        config = self.config
        if config.get("peft_type") != "LORA":
            raise RejuvError(f"{where}: peft_type {config.get('peft_type')!r}; rejuv reads LoRA adapters only (merge "
                             "other PEFT methods with PEFT's merge_and_unload and give the merged model)")
        for key, value in config.items():
            if key in _UNDERSTOOD or value in (None, False, {}, [], "", 0):
                continue
            what = _NAMED.get(key, f"{key} = {value!r}")
            raise RejuvError(f"{where}: {what} is a LoRA variant rejuv does not handle (its merged weights are not "
                             "θ_base + s·B·A); merge it with PEFT's merge_and_unload and give the merged model")
        if config.get("bias", "none") != "none":
            raise RejuvError(f"{where}: bias {config['bias']!r}: trained biases are a LoRA variant rejuv does not "
                             "handle; merge it with PEFT's merge_and_unload and give the merged model")
        if config.get("fan_in_fan_out"):
            raise RejuvError(f"{where}: fan_in_fan_out (GPT-2 style Conv1D weights) is not a layout rejuv handles")
        init = str(config.get("init_lora_weights", True)).lower()
        if init.startswith(_BASE_REWRITING):
            raise RejuvError(f"{where}: init_lora_weights {config['init_lora_weights']!r} rewrites the base weights "
                             "when the adapter is made, so θ_base + s·B·A over the original base is not the "
                             "fine-tuned model; give the merged model (or an adapter converted back to the base)")
        for key in ("r", "lora_alpha"):
            value = config.get(key)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise RejuvError(f"{where}: {key} must be a positive number, got {value!r}")

    def _pattern(self, key: str, module: str, default):
        """PEFT's per-module override: the first pattern of `key` that matches the module's name."""
        patterns = self.config.get(key) or {}
        for pattern, value in patterns.items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                return value
        return default

    def _pairs(self) -> dict[str, LoraPair]:
        parts: dict[str, dict[str, str]] = {}
        for name in self.weights.names():
            found = _KEY.match(name)
            if found is None:
                raise RejuvError(f"{self.path}: tensor {name} is {_what(name)}, which rejuv does not handle; merge the "
                                 "adapter with PEFT's merge_and_unload and give the merged model")
            parts.setdefault(found.group("module"), {})[found.group("part")] = name
        pairs = {}
        for module, ab in sorted(parts.items()):
            if set(ab) != {"A", "B"}:
                raise RejuvError(f"{self.path}: module {module} has lora_{''.join(ab)} without its other half")
            a, b = self.weights.tensors[ab["A"]], self.weights.tensors[ab["B"]]
            if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[0] != b.shape[1] or a.shape[0] < 1:
                raise RejuvError(f"{self.path}: module {module}: lora_A is {list(a.shape)} and lora_B "
                                 f"{list(b.shape)}, not (r × in) and (out × r)")
            rank = a.shape[0]
            stated = self._pattern("rank_pattern", module, self.config["r"])
            if stated != rank:
                raise RejuvError(f"{self.path}: module {module} has rank {rank}, but adapter_config.json says {stated}")
            alpha = float(self._pattern("alpha_pattern", module, self.config["lora_alpha"]))
            scaling = alpha / (math.sqrt(rank) if self.config.get("use_rslora") else rank)
            pairs[f"{module}.weight"] = LoraPair(ab["A"], ab["B"], rank, scaling)
        if not pairs:
            raise RejuvError(f"{self.path}: the adapter holds no LoRA weights")
        return pairs

    def close(self) -> None:
        self.weights.close()

    def __enter__(self) -> LoraAdapter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _what(name: str) -> str:
    if "lora_embedding_" in name:
        return "LoRA on an embedding"
    if "lora_magnitude_vector" in name:
        return "a DoRA magnitude vector"
    if "modules_to_save" in name:
        return "a full copy of a module (modules_to_save)"
    if ".lora_B.bias" in name or ".lora_A.bias" in name:
        return "a trained LoRA bias"
    if ".base_layer." in name or ".experts.lora_" in name:
        return "LoRA on stacked parameters (experts)"
    return "not a LoRA weight of a linear layer"


class LoraCheckpoint:
    """The fine-tuned model θ_base + s·B·A of an adapter over `base`, read like a `Checkpoint` (its tensors are
    the base's; the ones the adapter updates are merged block by block in float32 and stored in the base's
    dtype, as a merged copy would hold them). `low_rank(name)` gives the pair itself."""

    def __init__(self, adapter: LoraAdapter, base: Checkpoint, owns_base: bool = False):
        self.adapter, self.base, self.owns_base = adapter, base, owns_base
        self.path, self.config, self.tensors, self.is_pickle = adapter.path, base.config, base.tensors, False
        for name, pair in adapter.pairs.items():
            info = base.tensors.get(name)
            a, b = adapter.weights.tensors[pair.a], adapter.weights.tensors[pair.b]
            wanted = (b.shape[0], a.shape[1])
            if info is None:
                raise RejuvError(f"{adapter.path}: updates {name}, which base {base.path} does not hold (another "
                                 "base?)")
            if tuple(info.shape) != wanted:
                raise RejuvError(f"{adapter.path}: updates {name} with B·A of shape {list(wanted)}, but it is "
                                 f"{list(info.shape)} in base {base.path} (another base?)")

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    def names(self) -> list[str]:
        return self.base.names()

    def low_rank(self, name: str) -> LoraPair | None:
        return self.adapter.pairs.get(name)

    def lora_a(self, name: str) -> np.ndarray:
        """A of the tensor's pair, in float32."""
        pair, weights = self.adapter.pairs[name], self.adapter.weights
        return weights.read_array(pair.a, 0, rows_of(weights.tensors[pair.a].shape)).astype(np.float32)

    def delta_rows(self, name: str, start: int, stop: int, a: np.ndarray | None = None) -> np.ndarray:
        """Rows `start:stop` of s·B·A in float32 (B's rows times all of A, then scaled, as PEFT computes it);
        `a`: A in float32, when the caller holds it already."""
        pair = self.adapter.pairs[name]
        b = self.adapter.weights.read_array(pair.b, start, stop).astype(np.float32)
        product = b @ (self.lora_a(name) if a is None else a)
        return np.multiply(product, np.float32(pair.scaling), out=product)

    def read_array(self, name: str, start: int, stop: int, into: np.ndarray | None = None) -> np.ndarray:
        base = self.base.read_array(name, start, stop, into=into)
        if name not in self.adapter.pairs:
            return base
        merged = base.astype(np.float32) + self.delta_rows(name, start, stop)
        return merged.astype(numpy_dtype(self.tensors[name].dtype))

    def read_rows(self, name: str, start: int, stop: int):
        return as_torch(self.read_array(name, start, stop))

    def read(self, name: str):
        return self.read_rows(name, 0, rows_of(self.tensors[name].shape))

    def close(self) -> None:
        self.adapter.close()
        if self.owns_base:
            self.base.close()

    def __enter__(self) -> LoraCheckpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def base_folder_of(path: str | Path, given: str | None = None, allow_pickle: bool = False, progress: bool = True
                 ) -> str:
    """The local base folder of the adapter at `path`: `given` (a command's --base) or the base the adapter
    names, resolved like any model argument (a local folder, or a Hub ID at its revision)."""
    if given is not None:
        return given
    from rejuv.io.hub import resolve

    adapter = LoraAdapter(path, allow_pickle)
    try:
        ref = adapter.base_ref
    finally:
        adapter.close()
    if ref is None:
        raise RejuvError(f"{path}: the adapter names no base model (base_model_name_or_path); give the base with "
                         "--base")
    found = resolve(ref, allow_pickle, progress)
    if not Path(found.path).is_dir():
        raise RejuvError(f"{path}: its base {ref!r} (base_model_name_or_path) is neither a local folder nor a Hub "
                         "model; give the base with --base")
    return found.path


def open_checkpoint(path: str | Path, allow_pickle: bool = False, base: str | None = None):
    """A `Checkpoint`, or for an adapter folder the `LoraCheckpoint` over its base (`base` when given)."""
    if not is_adapter(path):
        return Checkpoint(path, allow_pickle)
    adapter = LoraAdapter(path, allow_pickle)
    try:
        base_ckpt = Checkpoint(base_folder_of(path, base, allow_pickle), allow_pickle)
    except BaseException:
        adapter.close()
        raise
    try:
        return LoraCheckpoint(adapter, base_ckpt, owns_base=True)
    except BaseException:
        adapter.close()
        base_ckpt.close()
        raise


def write_adapter(folder: Path, sft: LoraCheckpoint, alpha: float, resets: dict[str, dict], base: str,
                  base_commit: str | None = None) -> None:
    """The rejuvenated adapter: the fusion θ_base + α·s·B·A as B scaled by α, and each reset neuron back at its
    base values, a reader's row of B (its output) or a writer's column of A (its input) zeroed; tensors the
    adapter does not update need nothing (their fused and reset values are the base's). Merged over the same
    base, it gives the full output of the same `rejuv apply` (within the rounding of α·B to B's dtype). The
    config is the input's, naming `base` (and its commit, when from the Hub)."""
    from safetensors.torch import save_file

    weights = sft.adapter.weights
    tensors = {}
    for name, pair in sft.adapter.pairs.items():
        a = weights.read_array(pair.a, 0, rows_of(weights.tensors[pair.a].shape)).copy()
        b = weights.read_array(pair.b, 0, rows_of(weights.tensors[pair.b].shape))
        b = (b.astype(np.float32) * np.float32(alpha)).astype(b.dtype)
        reset = resets.get(name)
        if reset is not None:
            indices = np.array(reset["indices"], dtype=np.int64)
            if reset["axis"] == 0:
                b[indices, :] = 0
            else:
                a[:, indices] = 0
        tensors[pair.a], tensors[pair.b] = as_torch(a).clone(), as_torch(b).clone()
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(folder / ADAPTER_WEIGHTS),
              metadata={"format": "pt"})
    config = {**sft.adapter.config, "base_model_name_or_path": base.split("@")[0] if "@" in base else base,
              "revision": base_commit or (base.split("@", 1)[1] if "@" in base else sft.adapter.config.get("revision"))}
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
