"""Architecture adapters: where the neurons, the norms and the unembedding are.

Rejuvenation treats a decoder as a residual stream with *writers* (modules whose
output is added to the stream: `o_proj`, `down_proj`; their neurons are input
columns) and *readers* (modules that read the normalised stream: `q/k/v_proj`,
`gate/up_proj`; their neurons are output rows). The adapter names them for one
model family by role, so the rest of the code never spells a module path:

- a *fused projection* holds several kinds in one matrix (Phi-3's `qkv_proj`, `gate_up_proj`): a neuron
  of q, k, v, gate or up is a row of its kind's `span` inside it;
- a *post-norm* sits between a writer and the stream (Gemma 2/3, OLMo 2: `post_attention_layernorm`,
  `post_feedforward_layernorm`): what the writer adds is the norm of its output;
- `norm_offset` 1 is Gemma's RMSNorm, which scales by 1 + weight;
- *experts* (Mixtral, Qwen3-MoE): each expert's MLP has its own gate/up/down neurons, stored per expert in
  the checkpoint and stacked in memory by transformers (`experts.gate_up_proj` [E, 2I, H] with the gate rows
  first, `experts.down_proj` [E, H, I]); the router is fused like every tensor and never reset.

A neuron is named by the checkpoint's tensors (`module`.weight, rows or columns, within `span`), which is what
the reset and the manifest touch; `memory_slot` says where the same values sit in the loaded model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rejuv.errors import RejuvError

READER_KINDS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
WRITER_KINDS = ("o_proj", "down_proj")
NEURON_KINDS = READER_KINDS + WRITER_KINDS
MLP_KINDS = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Neurons:
    """The neurons of one kind in one layer (and one expert), as the checkpoint stores them."""

    layer: int
    kind: str
    module: str  # module path in the checkpoint, e.g. model.layers.3.mlp.down_proj
    axis: int  # 0: rows (output neurons of a reader), 1: columns (input neurons of a writer)
    span: tuple[int, int] | None = None  # rows of a fused projection that hold this kind; None: all of them
    expert: int | None = None  # the expert of a mixture-of-experts layer

    @property
    def weight(self) -> str:
        return f"{self.module}.weight"

    @property
    def bias(self) -> str:
        return f"{self.module}.bias"

    @property
    def offset(self) -> int:
        """Where this kind's neurons start along the axis of the tensor."""
        return self.span[0] if self.span else 0

    @property
    def label(self) -> str:
        """The name the manifest's per-module summary gives it: layer, expert, kind."""
        return f"{self.layer}.{self.kind}" if self.expert is None else f"{self.layer}.expert{self.expert}.{self.kind}"


@dataclass(frozen=True)
class Experts:
    """A mixture-of-experts MLP: per-expert tensors in the checkpoint, stacked in memory (transformers ≥ 5)."""

    block: str  # the MLP block in the checkpoint: "block_sparse_moe" (Mixtral), "mlp" (Qwen3-MoE)
    names: dict[str, str]  # kind → the tensor's module inside one expert: gate_proj → "w1" (Mixtral)
    count_keys: tuple[str, ...]  # the config keys that may hold the number of experts (the hub's, transformers')
    width_key: str  # the config key of one expert's intermediate size
    memory_block: str = "mlp"  # the block's path in the loaded model (transformers renames Mixtral's)

    def count(self, config: dict) -> int:
        found = next((config[k] for k in self.count_keys if config.get(k) is not None), None)
        if found is None:
            raise RejuvError(f"a {self.block} mixture-of-experts config names no number of experts "
                             f"({' or '.join(self.count_keys)})")
        return int(found)

    def sparse(self, config: dict, layer: int) -> bool:
        """Whether `layer`'s MLP is the experts (Qwen3-MoE may keep dense MLPs in some layers)."""
        step = int(config.get("decoder_sparse_step") or 1)
        return (layer not in (config.get("mlp_only_layers") or []) and self.count(config) > 0
                and (layer + 1) % step == 0)

    def memory(self, layers: str, layer: int) -> str:
        """The experts module of `layer` in the loaded model."""
        return f"{layers}.{layer}.{self.memory_block}.experts"


@dataclass(frozen=True)
class ArchAdapter:
    family: str
    model_types: tuple[str, ...]
    modules: dict[str, str] = field(default_factory=lambda: {
        "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
        "o_proj": "self_attn.o_proj", "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
        "down_proj": "mlp.down_proj",
    })
    fused: dict[str, tuple[str, ...]] = field(default_factory=dict)  # module → the kinds it holds, in row order
    post_norms: dict[str, str] = field(default_factory=dict)  # writer kind → the norm between it and the stream
    norm_offset: float = 0.0  # 1: the RMSNorms scale by (1 + weight)
    experts: Experts | None = None
    layers: str = "model.layers"
    backbone: str = "model"
    embedding: str = "model.embed_tokens"
    final_norm: str = "model.norm"
    unembedding: str = "lm_head"

    def num_layers(self, config: dict) -> int:
        return config_count(config, "num_hidden_layers")

    def logit_softcap(self, config: dict) -> float | None:
        """Gemma 2's final soft-capping of the logits, cap·tanh(z/cap), where the config sets one."""
        cap = config.get("final_logit_softcapping")
        return float(cap) if cap else None

    def kind_sizes(self, config: dict) -> dict[str, int]:
        """Neurons of each kind that a fused projection splits into rows."""
        heads, hidden = config_count(config, "num_attention_heads"), config_count(config, "hidden_size")
        head_dim = config_count(config, "head_dim") if config.get("head_dim") else hidden // max(heads, 1)
        kv = (config_count(config, "num_key_value_heads") if config.get("num_key_value_heads") else heads) * head_dim
        width = config_count(config, "intermediate_size")
        return {"q_proj": heads * head_dim, "k_proj": kv, "v_proj": kv, "gate_proj": width, "up_proj": width}

    def _fused_kind(self, kind: str) -> tuple[str, tuple[str, ...]] | None:
        return next(((module, kinds) for module, kinds in self.fused.items() if kind in kinds), None)

    def neurons(self, config: dict) -> list[Neurons]:
        """Every neuron-bearing module, layer by layer, in a fixed kind order (experts in expert order)."""
        out = []
        sizes = self.kind_sizes(config) if self.fused else {}
        for layer in range(self.num_layers(config)):
            prefix = f"{self.layers}.{layer}"
            sparse = self.experts is not None and self.experts.sparse(config, layer)
            for kind in NEURON_KINDS:
                axis = 0 if kind in READER_KINDS else 1
                if sparse and kind in MLP_KINDS:
                    continue
                fused = self._fused_kind(kind)
                if fused:
                    module, kinds = fused
                    start = sum(sizes[k] for k in kinds[: kinds.index(kind)])
                    out.append(Neurons(layer, kind, f"{prefix}.{module}", axis, (start, start + sizes[kind])))
                else:
                    out.append(Neurons(layer, kind, f"{prefix}.{self.modules[kind]}", axis))
            if sparse:
                e = self.experts
                for expert in range(e.count(config)):
                    for kind in MLP_KINDS:
                        module = f"{prefix}.{e.block}.experts.{expert}.{e.names[kind]}"
                        out.append(Neurons(layer, kind, module, 0 if kind in READER_KINDS else 1, expert=expert))
        return out

    def vocab_tensors(self) -> tuple[str, str]:
        """Tensors whose first axis is the vocabulary (may grow when SFT adds tokens)."""
        return f"{self.embedding}.weight", f"{self.unembedding}.weight"

    def post_norm(self, n: Neurons) -> str | None:
        """The module of the norm between writer `n` and the stream, if the family has one."""
        suffix = self.post_norms.get(n.kind)
        return f"{self.layers}.{n.layer}.{suffix}" if suffix else None

    def memory_slot(self, name: str, config: dict) -> tuple[str, tuple]:
        """Where the checkpoint tensor `name` sits in the loaded model: a parameter and an index into it
        (an expert's slice of a stacked tensor; `()` where the names agree)."""
        e = self.experts
        if e is None:
            return name, ()
        block = re.escape(e.block)
        found = re.fullmatch(rf"(.*\.layers\.\d+)\.{block}\.experts\.(\d+)\.(\w+)\.weight", name)
        if found:
            layer, expert, module = found.group(1), int(found.group(2)), found.group(3)
            kind = next((k for k, m in e.names.items() if m == module), None)
            if kind is not None:
                stacked = f"{layer}.{e.memory_block}.experts"
                if kind == "down_proj":
                    return f"{stacked}.down_proj", (expert,)
                width = config_count(config, e.width_key)
                rows = slice(0, width) if kind == "gate_proj" else slice(width, 2 * width)
                return f"{stacked}.gate_up_proj", (expert, rows)
        if e.block != e.memory_block:
            return re.sub(rf"\.{block}\.", f".{e.memory_block}.", name), ()
        return name, ()


_POST_NORMS = {"o_proj": "post_attention_layernorm", "down_proj": "post_feedforward_layernorm"}

ADAPTERS = (
    ArchAdapter("llama", ("llama",)),
    ArchAdapter("mistral", ("mistral",)),
    ArchAdapter("qwen2", ("qwen2",)),
    ArchAdapter("qwen3", ("qwen3",)),  # q_norm/k_norm act per head after q_proj/k_proj; scores are taken before them
    ArchAdapter("gemma2", ("gemma2",), post_norms=_POST_NORMS, norm_offset=1.0),
    ArchAdapter("gemma3", ("gemma3_text",), post_norms=_POST_NORMS, norm_offset=1.0),
    ArchAdapter("phi3", ("phi3",), fused={"self_attn.qkv_proj": ("q_proj", "k_proj", "v_proj"),
                                          "mlp.gate_up_proj": ("gate_proj", "up_proj")}),
    ArchAdapter("olmo2", ("olmo2",), post_norms=_POST_NORMS),
    ArchAdapter("mixtral", ("mixtral",), experts=Experts(
        "block_sparse_moe", {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}, ("num_local_experts",),
        "intermediate_size")),
    ArchAdapter("qwen3_moe", ("qwen3_moe",), experts=Experts(
        "mlp", {"gate_proj": "gate_proj", "up_proj": "up_proj", "down_proj": "down_proj"},
        ("num_experts", "num_local_experts"), "moe_intermediate_size")),
)

# Families users hold that rejuv does not handle yet, and what each lacks.
MISSING = {
    "gemma3": "the multimodal Gemma 3 wrapper (vision tower, language_model prefix); its text model "
              "(model_type gemma3_text, Gemma3ForCausalLM) is supported",
    "gemma": "Gemma 1's adapter (its RMSNorm scales by 1 + weight like Gemma 2's, without the post-norms); "
             "not built or tested yet",
    "phi": "Phi-1/2's parallel attention and MLP with LayerNorm and a dense projection",
    "qwen2_moe": "shared experts beside the routed ones, with their own gate",
    "olmoe": "OLMoE's expert layout (an adapter like Qwen3-MoE's, not built or tested yet)",
    "deepseek_v2": "multi-head latent attention and shared experts",
    "deepseek_v3": "multi-head latent attention and shared experts",
    "gpt_oss": "attention sinks and transposed expert tensors with biases",
    "phimoe": "Phi-3.5-MoE's expert layout (not built or tested yet)",
}


def config_count(config: dict, key: str) -> int:
    """A size the layout is read from (layers, heads, widths): a whole number the config must state."""
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RejuvError(f"config.json {'lacks' if value is None else 'has no whole number as'} {key} "
                         f"({'' if value is None else repr(value) + '; '}the neurons' layout is read from it)")
    return value


def supported_model_types() -> list[str]:
    return [t for a in ADAPTERS for t in a.model_types]


def adapter_for(config: dict, where: str = "model") -> ArchAdapter:
    model_type = config.get("model_type")
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    lacks = MISSING.get(model_type, "an adapter naming its neuron-bearing modules, final norm and unembedding")
    raise RejuvError(f"{where}: unsupported architecture {model_type!r}: rejuv lacks {lacks}; "
                     f"supported: {', '.join(supported_model_types())}")


def _stacked_expert_size(adapter: ArchAdapter, ckpt, n: Neurons) -> int | None:
    """An expert's neuron count read from the stacked tensor of the layout transformers holds in memory
    (`memory_slot`), where a checkpoint was saved that way."""
    name, _ = adapter.memory_slot(n.weight, ckpt.config)
    info = ckpt.tensors.get(name)
    if info is None or len(info.shape) != 3:
        return None
    return info.shape[2] if n.kind == "down_proj" else info.shape[1] // 2


def neuron_sizes(adapter: ArchAdapter, ckpt, resettable: bool = True) -> dict[Neurons, int]:
    """Neuron count of every reader (rows) and writer (columns) module, checked against the tensors.

    A checkpoint with stacked experts is counted but, as its neurons are not the per-expert tensors the reset
    addresses, refused when `resettable` (a reset is asked for)."""
    sizes = {}
    try:
        neurons = adapter.neurons(ckpt.config)
    except RejuvError as exc:
        raise RejuvError(f"{ckpt.path}: {exc}") from None
    spans: dict[str, int] = {}
    for n in neurons:
        info = ckpt.tensors.get(n.weight)
        if info is None and n.expert is not None:
            size = _stacked_expert_size(adapter, ckpt, n)
            if size is not None and not resettable:
                sizes[n] = size
                continue
            stacked = adapter.experts.memory(adapter.layers, n.layer)
            raise RejuvError(f"{ckpt.path}: expected the per-expert tensor {n.weight} (expert {n.expert} of layer "
                             f"{n.layer}), as transformers saves them; a checkpoint with the experts stacked in "
                             f"one tensor under {stacked} can be fused (--fusion-only) but not reset")
        if info is None or len(info.shape) != 2:
            raise RejuvError(f"{ckpt.path}: expected a 2-D tensor {n.weight} for layer {n.layer} {n.kind}")
        if n.span is None:
            sizes[n] = info.shape[n.axis]
        else:
            sizes[n] = n.span[1] - n.span[0]
            spans[n.weight] = max(spans.get(n.weight, 0), n.span[1])
    for name, rows in spans.items():
        if ckpt.tensors[name].shape[0] != rows:
            raise RejuvError(f"{ckpt.path}: {name} has {ckpt.tensors[name].shape[0]} rows, but the config's heads "
                             f"and widths make {rows}")
    return sizes
