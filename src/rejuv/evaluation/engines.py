"""Generation engines for `rejuv eval` (and every recipe that evaluates through it): transformers, and vLLM
when it is installed and a GPU is present. Both take the settings of an evaluation (`samples`,
`temperature`, `top_p`, `max_new_tokens`, `batch_size`, `seed`, `device`, `dtype`, `trust_remote_code`,
`progress`: `rejuv.recipes.eval.EvalConfig` holds them) and give the same results: K completions per prompt."""

from __future__ import annotations

import torch

from rejuv.io.adapter import LoraAdapter, base_folder_of, is_adapter
from rejuv.modeling import load_model, load_tokenizer, resolve_device

ENGINES = ("auto", "transformers", "vllm")


def choose_engine(name: str) -> str:
    if name != "auto":
        return name
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "transformers"
    return "vllm" if torch.cuda.is_available() else "transformers"


def eval_device(cfg) -> str:
    """Where the transformers engine runs: the device given (`auto`: accelerate's device map), else cuda
    when a GPU is visible, else cpu; the same meaning as in every other command."""
    return resolve_device(cfg.device)


def dtype_name(cfg, engine: str) -> str:
    """The compute dtype as it ran: `auto` is float32 on the CPU and each checkpoint's own dtype on a GPU
    (each result then states its own)."""
    if engine == "vllm" or cfg.dtype != "auto":
        return cfg.dtype
    dtype = eval_dtype(cfg)
    return "each checkpoint's own" if dtype == "auto" else str(dtype).removeprefix("torch.")


def eval_dtype(cfg):
    """The dtype the transformers engine loads in: `auto` is float32 on the CPU, the checkpoint's on a GPU."""
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
    if dtype == "auto" and eval_device(cfg) == "cpu":
        return torch.float32
    return dtype


class TransformersEngine:
    def __init__(self, path: str, cfg):
        device = eval_device(cfg)
        model = load_model(path, eval_dtype(cfg), device_map="auto" if device == "auto" else None,
                           trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle,
                           progress=cfg.progress, adapter_base=getattr(cfg, "base", None))
        self.model = (model if device == "auto" else model.to(device)).eval()
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self.tokenizer = load_tokenizer(path, cfg.trust_remote_code, getattr(cfg, "base", None))
        self.tokenizer.padding_side = "left"  # generation continues from the right end
        self.cfg = cfg

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], progress=None) -> list[list[str]]:
        cfg, tok = self.cfg, self.tokenizer
        outputs: list[list[str]] = []
        for start in range(0, len(prompts), cfg.batch_size):
            batch = prompts[start: start + cfg.batch_size]
            # Seeded per batch: results do not depend on what ran before in the process.
            torch.manual_seed(cfg.seed * 100_003 + start)
            enc = tok.pad({"input_ids": batch}, return_tensors="pt")
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
            generated = self.model.generate(
                **enc, do_sample=cfg.temperature > 0, temperature=cfg.temperature or None, top_p=cfg.top_p,
                max_new_tokens=cfg.max_new_tokens, num_return_sequences=cfg.samples,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            texts = tok.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            outputs += [texts[i * cfg.samples:(i + 1) * cfg.samples] for i in range(len(batch))]
            if progress is not None:
                progress.update(len(batch))
        return outputs


class VLLMEngine:
    def __init__(self, path: str, cfg):
        from vllm import LLM

        self.lora = None
        model, lora = path, {}
        if is_adapter(path):  # vLLM's own LoRA serving: the base, and the adapter on every request
            from vllm.lora.request import LoRARequest

            adapter = LoraAdapter(path, cfg.allow_pickle)
            rank = max(pair.rank for pair in adapter.pairs.values())
            adapter.close()
            model = base_folder_of(path, getattr(cfg, "base", None), cfg.allow_pickle, progress=False)
            lora = {"enable_lora": True, "max_lora_rank": next((r for r in (8, 16, 32, 64, 128, 256, 320, 512)
                                                                 if r >= rank), rank)}
            self.lora = LoRARequest("rejuv", 1, str(path))
        self.llm = LLM(model=model, seed=cfg.seed, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code, **lora)
        self.cfg = cfg
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.dtype = str(getattr(config, "dtype", cfg.dtype)).removeprefix("torch.")

    def generate(self, prompts: list[list[int]], progress=None) -> list[list[str]]:
        from vllm import SamplingParams

        cfg = self.cfg
        params = SamplingParams(n=cfg.samples, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_tokens=cfg.max_new_tokens, seed=cfg.seed)
        lora = {"lora_request": self.lora} if self.lora is not None else {}
        results = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, **lora)
        if progress is not None:
            progress.update(len(prompts))
        return [[o.text for o in r.outputs] for r in results]
