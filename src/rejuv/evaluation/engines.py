"""Generation engines for `rejuv eval` (and every recipe that evaluates through it): transformers, and vLLM
when it is installed and a GPU is present. Both take their own settings (`Sampling`: what to sample and where;
the recipe builds them from its config) and give the same results: K completions per prompt."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rejuv.io.adapter import LoraAdapter, base_folder_of, is_adapter
from rejuv.modeling import load_model, load_tokenizer, resolve_device


@dataclass(frozen=True)
class Sampling:
    """How an engine loads a model and samples from it."""

    samples: int  # completions per prompt (K)
    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int  # prompts per generate call (transformers)
    seed: int
    device: str | None  # None: a GPU when one is visible; `auto`: accelerate's device map
    dtype: str  # auto | float32 | bfloat16
    trust_remote_code: bool = False
    allow_pickle: bool = False
    progress: bool = True
    base: str | None = None  # the base of a PEFT adapter given (default: the one it names)


ENGINES = ("auto", "transformers", "vllm")


def choose_engine(name: str) -> str:
    if name != "auto":
        return name
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "transformers"
    return "vllm" if torch.cuda.is_available() else "transformers"


def eval_device(sampling: Sampling) -> str:
    """Where the transformers engine runs: the device given (`auto`: accelerate's device map), else cuda
    when a GPU is visible, else cpu; the same meaning as in every other command."""
    return resolve_device(sampling.device)


def dtype_name(sampling: Sampling, engine: str) -> str:
    """The compute dtype as it ran: `auto` is float32 on the CPU and each checkpoint's own dtype on a GPU
    (each result then states its own)."""
    if engine == "vllm" or sampling.dtype != "auto":
        return sampling.dtype
    dtype = eval_dtype(sampling)
    return "each checkpoint's own" if dtype == "auto" else str(dtype).removeprefix("torch.")


def eval_dtype(sampling: Sampling):
    """The dtype the transformers engine loads in: `auto` is float32 on the CPU, the checkpoint's on a GPU."""
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16}[sampling.dtype]
    if dtype == "auto" and eval_device(sampling) == "cpu":
        return torch.float32
    return dtype


class TransformersEngine:
    def __init__(self, path: str, sampling: Sampling):
        device = eval_device(sampling)
        model = load_model(path, eval_dtype(sampling), device_map="auto" if device == "auto" else None,
                           trust_remote_code=sampling.trust_remote_code, allow_pickle=sampling.allow_pickle,
                           progress=sampling.progress, adapter_base=sampling.base)
        self.model = (model if device == "auto" else model.to(device)).eval()
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self.tokenizer = load_tokenizer(path, sampling.trust_remote_code, sampling.base)
        self.tokenizer.padding_side = "left"  # generation continues from the right end
        self.sampling = sampling

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], progress=None) -> list[list[str]]:
        sampling, tok = self.sampling, self.tokenizer
        outputs: list[list[str]] = []
        for start in range(0, len(prompts), sampling.batch_size):
            batch = prompts[start: start + sampling.batch_size]
            # Seeded per batch: results do not depend on what ran before in the process.
            torch.manual_seed(sampling.seed * 100_003 + start)
            enc = tok.pad({"input_ids": batch}, return_tensors="pt")
            enc = {k: v.to(self.model.device) for k, v in enc.items()}
            generated = self.model.generate(
                **enc, do_sample=sampling.temperature > 0, temperature=sampling.temperature or None,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.samples,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            texts = tok.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            outputs += [texts[i * sampling.samples:(i + 1) * sampling.samples] for i in range(len(batch))]
            if progress is not None:
                progress.update(len(batch))
        return outputs


class VLLMEngine:
    def __init__(self, path: str, sampling: Sampling):
        from vllm import LLM

        self.lora = None
        model, lora = path, {}
        if is_adapter(path):  # vLLM's own LoRA serving: the base, and the adapter on every request
            from vllm.lora.request import LoRARequest

            adapter = LoraAdapter(path, sampling.allow_pickle)
            rank = max(pair.rank for pair in adapter.pairs.values())
            adapter.close()
            model = base_folder_of(path, sampling.base, sampling.allow_pickle, progress=False)
            lora = {"enable_lora": True, "max_lora_rank": next((r for r in (8, 16, 32, 64, 128, 256, 320, 512)
                                                                 if r >= rank), rank)}
            self.lora = LoRARequest("rejuv", 1, str(path))
        self.llm = LLM(model=model, seed=sampling.seed, dtype=sampling.dtype,
                       trust_remote_code=sampling.trust_remote_code, **lora)
        self.sampling = sampling
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.dtype = str(getattr(config, "dtype", sampling.dtype)).removeprefix("torch.")

    def generate(self, prompts: list[list[int]], progress=None) -> list[list[str]]:
        from vllm import SamplingParams

        sampling = self.sampling
        params = SamplingParams(n=sampling.samples, temperature=sampling.temperature, top_p=sampling.top_p,
                                max_tokens=sampling.max_new_tokens, seed=sampling.seed)
        lora = {"lora_request": self.lora} if self.lora is not None else {}
        results = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], params, **lora)
        if progress is not None:
            progress.update(len(prompts))
        return [[o.text for o in r.outputs] for r in results]
