"""Tiny models and tokenizers built locally, one per supported architecture, and a digest to compare their folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from rejuv.lab.tokenizer import make_char_tokenizer

ARCHS = ("llama", "mistral", "qwen2", "qwen3")
# Families with more roles: post-norms and (1 + weight) norms, soft-capping, fused projections, experts.
FAMILIES = ("gemma2", "gemma3_text", "phi3", "olmo2", "mixtral", "qwen3_moe")


def make_tokenizer():
    return make_char_tokenizer()


CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def make_bpe_chat_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with a ChatML template, like real chat checkpoints (SmolLM2, Qwen):
    merges across characters, `Ġ` word starts, special tokens that are not characters."""
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    rng = random.Random(0)
    corpus = []
    for _ in range(400):
        a, b = rng.randint(1, 30), rng.randint(1, 30)
        corpus += [f"compute {a}+{b}.", f"{a}+{b}={a + b}. \\boxed{{{a + b}}}", f"what is {a}+{b}? answer {a + b}.",
                   "user", "assistant", "system"]
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def build_bpe_chat_model(seed: int = 0, hidden: int = 32, layers: int = 2):
    """A tiny tied-embedding Llama over `make_bpe_chat_tokenizer`."""
    tok = make_bpe_chat_tokenizer()
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval(), tok


def tiny_config(arch: str, vocab_size: int, tied: bool = False, layers: int = 2, hidden: int = 32):
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    if arch in ("qwen3", "gemma2", "gemma3_text", "qwen3_moe"):
        kwargs["head_dim"] = hidden // 4
    if arch in ("gemma2", "gemma3_text"):
        # a window shorter than the test sequences, so the cached pieces meet sliding attention
        kwargs.update(sliding_window=8, query_pre_attn_scalar=hidden // 4)
    if arch == "gemma2":
        kwargs.update(final_logit_softcapping=3.0, attn_logit_softcapping=5.0)  # low caps that bite
    if arch == "mixtral":
        kwargs.update(num_local_experts=4, num_experts_per_tok=2)
    if arch == "qwen3_moe":  # layer 0 keeps a dense MLP, as mlp_only_layers allows
        kwargs.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=hidden, mlp_only_layers=[0])
    return AutoConfig.for_model(arch, **kwargs)


def build_model(arch: str, seed: int, tied: bool = False, layers: int = 2, hidden: int = 32):
    torch.manual_seed(seed)
    tok = make_tokenizer()
    model = AutoModelForCausalLM.from_config(tiny_config(arch, len(tok), tied, layers, hidden))
    with torch.no_grad():
        # Non-trivial norm gains and biases, so the attribution tests exercise them.
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model.eval(), tok


def save(model, tok, path: Path, **kwargs) -> Path:
    model.save_pretrained(path, **kwargs)
    tok.save_pretrained(path)
    return path


def weights(folder) -> dict:
    """Every tensor of a checkpoint folder, by name."""
    from rejuv.io.reader import Checkpoint

    with Checkpoint(folder) as ckpt:
        return {n: ckpt.read(n).clone() for n in ckpt.names()}


def perturbed(model, seed: int, scale: float = 0.05):
    """A copy of `model` with seeded noise on every parameter: a stand-in for an SFT model."""
    import copy

    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return other


def write_calibration(path: Path, n: int = 12, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            a, b = rng.randint(1, 20), rng.randint(1, 20)
            f.write(json.dumps({"prompt": f"compute {a}+{b}.", "response": f"{a}+{b}={a + b}. \\boxed{{{a + b}}}"})
                    + "\n")
    return path


def planning_world(root: Path, arch: str = "llama", tied: bool = False) -> Path:
    """What `rejuv plan` compares: a base, an early and a late stand-in for SFT checkpoints, calibration rows
    and RL prompts whose reward (`tiny:contains_seven`) a random model can learn."""
    import random

    base, tok = build_model(arch, seed=0, tied=tied)
    save(base, tok, root / "base")
    save(perturbed(base, seed=1, scale=0.05), tok, root / "early")
    save(perturbed(base, seed=2, scale=0.3), tok, root / "late")
    write_calibration(root / "calib.jsonl", n=8)
    rng = random.Random(0)
    with open(root / "rl.jsonl", "w") as f:
        for _ in range(16):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            f.write(json.dumps({"prompt": f"compute {a}+{b}.", "answer": "7"}) + "\n")
    return root


def assert_fusion_with_resets(out, base, sft, alpha: float, reset: dict) -> None:
    """Every tensor of `out` is the fusion of `base` and `sft` at `alpha`, except the manifest's `reset` entries,
    which hold base values."""
    got, s, b = weights(out), weights(sft), weights(base)
    assert got.keys() == s.keys()
    for name, value in got.items():
        expected = (alpha * s[name].float() + (1 - alpha) * b[name].float()).to(s[name].dtype)
        entry = reset.get(name)
        if entry:
            idx = torch.tensor(entry["indices"])
            if entry["axis"] == 0:
                assert torch.equal(value[idx], b[name][idx]), name
                expected[idx] = b[name][idx]
            else:
                assert torch.equal(value[:, idx], b[name][:, idx]), name
                expected[:, idx] = b[name][:, idx]
        assert torch.equal(value, expected), name  # nothing else moved


def contains_seven(completions, **_) -> list[float]:
    """A reward a random tiny model can learn within a few GRPO steps (used as `tiny:contains_seven`)."""
    return [1.0 if "7" in (c if isinstance(c, str) else str(c)) else -1.0 for c in completions]


def always_zero(completions, **_) -> list[float]:
    """A reward that never pays (used as `tiny:always_zero`): a probe learns nothing from it."""
    return [0.0 for _ in completions]


def tree_digest(path: Path) -> str:
    """Checksum of every file below `path` (names and bytes)."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj"]


def make_lora(model, folder: Path, seed: int = 1, rank: int = 4, alpha: int = 8, base_name: str | None = None,
              scale: float = 0.3, tok=None, **options) -> Path:
    """A PEFT LoRA adapter over `model` (a copy; `model` is untouched) with seeded, non-zero B, saved as PEFT saves
    it (with `tok` when given); `base_name` is written as its base_model_name_or_path."""
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=options.pop("target_modules", LORA_TARGETS),
                        init_lora_weights=False, **options)
    peft_model = get_peft_model(copy.deepcopy(model), config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "lora_A" in name:
                p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    peft_model.save_pretrained(folder)
    if tok is not None:
        tok.save_pretrained(folder)
    if base_name is not None:
        config_file = Path(folder) / "adapter_config.json"
        saved = json.loads(config_file.read_text())
        saved["base_model_name_or_path"] = base_name
        config_file.write_text(json.dumps(saved, indent=2))
    return Path(folder)


def peft_merged(model, adapter: Path):
    """PEFT's own merge of `adapter` over a copy of `model`: the reference rejuv's arithmetic is held to."""
    import copy

    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(model), str(adapter)).merge_and_unload()
