"""Architecture adapters: where the neurons, the final norm and the unembedding are.

Rejuvenation treats a decoder as a residual stream with *writers* (modules whose
output is added to the stream: `o_proj`, `down_proj`; their neurons are input
columns) and *readers* (modules that read the normalised stream: `q/k/v_proj`,
`gate/up_proj`; their neurons are output rows). The adapter names them for one
model family, so the rest of the code never spells a module path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rejuv.errors import RejuvError

READER_KINDS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
WRITER_KINDS = ("o_proj", "down_proj")
NEURON_KINDS = READER_KINDS + WRITER_KINDS


@dataclass(frozen=True)
class Neurons:
    """The neurons of one linear module in one layer."""

    layer: int
    kind: str
    module: str  # module path, e.g. model.layers.3.mlp.down_proj
    axis: int  # 0: rows (output neurons of a reader), 1: columns (input neurons of a writer)

    @property
    def weight(self) -> str:
        return f"{self.module}.weight"

    @property
    def bias(self) -> str:
        return f"{self.module}.bias"


@dataclass(frozen=True)
class ArchAdapter:
    family: str
    model_types: tuple[str, ...]
    modules: dict[str, str] = field(default_factory=lambda: {
        "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
        "o_proj": "self_attn.o_proj", "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
        "down_proj": "mlp.down_proj",
    })
    layers: str = "model.layers"
    backbone: str = "model"
    embedding: str = "model.embed_tokens"
    final_norm: str = "model.norm"
    unembedding: str = "lm_head"

    def num_layers(self, config: dict) -> int:
        return int(config["num_hidden_layers"])

    def neurons(self, config: dict) -> list[Neurons]:
        """Every neuron-bearing module, layer by layer, in a fixed kind order."""
        out = []
        for layer in range(self.num_layers(config)):
            for kind in NEURON_KINDS:
                axis = 0 if kind in READER_KINDS else 1
                out.append(Neurons(layer, kind, f"{self.layers}.{layer}.{self.modules[kind]}", axis))
        return out

    def vocab_tensors(self) -> tuple[str, str]:
        """Tensors whose first axis is the vocabulary (may grow when SFT adds tokens)."""
        return f"{self.embedding}.weight", f"{self.unembedding}.weight"


ADAPTERS = (
    ArchAdapter("llama", ("llama",)),
    ArchAdapter("mistral", ("mistral",)),
    ArchAdapter("qwen2", ("qwen2",)),
    ArchAdapter("qwen3", ("qwen3",)),  # q_norm/k_norm act per head after q_proj/k_proj; scores are taken before them
)


def supported_model_types() -> list[str]:
    return [t for a in ADAPTERS for t in a.model_types]


def adapter_for(config: dict, where: str = "model") -> ArchAdapter:
    model_type = config.get("model_type")
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise RejuvError(f"{where}: unsupported architecture {model_type!r}; "
                     f"supported: {', '.join(supported_model_types())}")


def neuron_sizes(adapter: ArchAdapter, ckpt) -> dict[Neurons, int]:
    """Neuron count of every reader (rows) and writer (columns) module."""
    sizes = {}
    for n in adapter.neurons(ckpt.config):
        info = ckpt.tensors.get(n.weight)
        if info is None or len(info.shape) != 2:
            raise RejuvError(f"{ckpt.path}: expected a 2-D tensor {n.weight} for layer {n.layer} {n.kind}")
        sizes[n] = info.shape[n.axis]
    return sizes
