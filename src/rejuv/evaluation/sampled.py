"""Sampled evaluation: Pass@1 averaged over K samples and unbiased pass@k. `rejuv eval` runs it, and so does
every command that evaluates as one of its steps (diagnose, plan, the lab), with its own `EvalConfig`.

Protocol of the paper (appendix B): temperature 0.6, top-p 1.0, K samples per
problem, Math-Verify on the boxed final answer. Generation runs on vLLM when it
is installed and a GPU is present (`engine: auto`), otherwise on transformers;
both give the same results format. Prompts follow the rule every command shares
(`rejuv.data.prompts`). `dtype: auto` is float32 on the CPU (bf16 is fast there only
on CPUs with bf16 instructions; docs/training.md) and the checkpoint's dtype on a GPU.

Work is kept as it is done: each (checkpoint, benchmark) result goes to
`.<out>.rejuv-partial/` beside the output as soon as it is graded; a run with the
same inputs and settings after an interruption reuses those results and samples
only what is missing. The folder is removed when the output is written.

Output (`out/`, written atomically): `eval.json` (every number with its
sample counts) and `samples.jsonl` (every completion with its grade).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rejuv import __version__
from rejuv.data.prompts import chat_template_option, prompt_ids, uses_template, warn_long_completions
from rejuv.data.rows import problem_rows
from rejuv.errors import RejuvError
from rejuv.evaluation.confidence import confidence_scores, stated_confidence
from rejuv.evaluation.engines import (
    ENGINES,
    Sampling,
    TransformersEngine,
    VLLMEngine,
    choose_engine,
    dtype_name,
    eval_device,
)
from rejuv.evaluation.grading import grade_many
from rejuv.evaluation.kept import kept_result, partial_dir, write_atomic
from rejuv.evaluation.lm_eval_format import lm_eval_files
from rejuv.evaluation.scores import score
from rejuv.io.adapter import base_folder_of, is_adapter
from rejuv.io.fingerprint import file_sha256, folder_fingerprint
from rejuv.io.inputs import sources
from rejuv.io.jsonl import strict_dumps, write_jsonl
from rejuv.io.output import atomic_output_dir, claimed_output
from rejuv.modeling import (
    adapter_base_option,
    allow_pickle_option,
    check_model_path,
    config_positions,
    device_option,
    load_tokenizer,
    trust_remote_code_option,
)
from rejuv.options import (
    Config,
    OptionError,
    as_given,
    option,
    out_option,
    overwrite_option,
    progress_option,
    recorded,
    seed_option,
    settings_for,
    settings_of,
    tagged,
)
from rejuv.progress import progress_bar
from rejuv.provenance import what_ran


@dataclass
class EvalConfig(Config):
    """Sample K answers per problem; report Pass@1 (averaged over samples) and pass@k."""

    checkpoints: list[str] = option(positional=True, help="Checkpoints to evaluate: model folders, PEFT LoRA adapter "
                                    "folders, or Hub IDs of either (org/name[@revision]).", path="checkpoint",
                                    nonempty=True, distinct=True)
    data: list[str] = option(help="Benchmark JSONL/parquet with problem (or prompt/messages) and answer; repeatable.",
                             path="file", nonempty=True)
    out: str = out_option("Output folder for eval.json and samples.jsonl.")
    samples: int = option(4, short="-k", help="Samples per problem (K).", at_least=1, affects="result")
    pass_k: list[int] = option([], help="k values of pass@k, comma-separated.", default_text="1,K", at_least=1)
    temperature: float = option(0.6, help="Sampling temperature (0: greedy).", at_least=0, affects="result")
    top_p: float = option(1.0, help="Nucleus sampling mass.", above=0, at_most=1, affects="result")
    max_new_tokens: int = option(1024, help="Completion tokens per sample.", at_least=1, affects="result")
    max_problems: int | None = option(None, help="Evaluate the first N problems of each file.", at_least=1,
                                      affects="result")
    chat_template: str = chat_template_option(affects="result")
    engine: str = option("auto", choices=ENGINES, help="Generation engine.", default_text="auto: vLLM on a GPU")
    batch_size: int = option(16, help="Prompts per generate call (transformers).", at_least=1, affects="result")
    device: str | None = device_option("cpu, cuda, cuda:N, or auto (accelerate's device map) for the transformers "
                                       "engine.")
    dtype: str = option("auto", choices=("auto", "float32", "bfloat16"), help="Compute dtype.",
                        default_text="auto: float32 on the CPU, the checkpoint's dtype on a GPU", affects="result")
    seed: int = seed_option("Sampling seed.", affects="result")
    overwrite: bool = overwrite_option()
    trust_remote_code: bool = trust_remote_code_option()
    allow_pickle: bool = allow_pickle_option()
    progress: bool = progress_option("Progress bars and resume messages.")
    base: str | None = adapter_base_option()

    def check(self) -> None:
        too_big = [k for k in self.pass_k if k > self.samples]
        if too_big:
            raise OptionError("pass_k", f"pass@k needs k ≤ samples per problem ({self.samples}); got k={too_big}",
                              also=("samples",))
        names = [Path(d).stem for d in self.data]
        if len(set(names)) < len(names):
            raise OptionError("data", f"two benchmark files share a name ({', '.join(names)}); results are kept by "
                              "file name")

    @property
    def ks(self) -> list[int]:
        """The k values of pass@k: those given, else 1 and K."""
        return sorted(set(self.pass_k or [1, self.samples]))

    # What a recipe that evaluates as one of its steps (diagnose, plan) sets itself; the rest is its user's.
    SET_BY_CALLER: ClassVar[tuple[str, ...]] = (
        "checkpoints", "data", "out", "pass_k", "seed", "chat_template", "device", "trust_remote_code", "allow_pickle",
        "progress", "overwrite", "base")

    @classmethod
    def section(cls, name: str, **defaults) -> type:
        """The settings a composing recipe exposes (`--eval-temperature`, YAML `evaluation:`), with its defaults."""
        return settings_of(cls, name, cls.SET_BY_CALLER, defaults)


def _sampling(cfg: EvalConfig) -> Sampling:
    """The engines' own settings, from the command's options."""
    return settings_for(Sampling, cfg)


def _unit_key(ckpt: str, bench: str, data_sha: str, cfg: EvalConfig, engine: str, ks: list[int]) -> str:
    """Everything a (checkpoint, benchmark) result depends on."""
    if is_adapter(ckpt):  # its results are those of the base it is merged over, too
        base = base_folder_of(ckpt, cfg.base, cfg.allow_pickle, progress=False)
        ckpt_files = {"adapter": folder_fingerprint(ckpt), "base": folder_fingerprint(base)}
    else:
        ckpt_files = folder_fingerprint(ckpt)
    inputs = {"checkpoint": str(Path(ckpt).resolve()), "files": ckpt_files, "benchmark": bench,
              "data_sha256": data_sha, "settings": tagged(cfg, "result"), "ks": ks,
              "engine": engine, "device": eval_device(_sampling(cfg)), "version": __version__}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]




def _grade(ckpt: str, name: str, rows: list[dict], completions: list[list[str]], cfg: EvalConfig,
           ks: list[int]) -> tuple[dict, list[dict]]:
    flat_gold = [r["answer"] for r, comps in zip(rows, completions, strict=True) for _ in comps]
    flat = [c for comps in completions for c in comps]
    grades = grade_many(flat_gold, flat)
    correct = [grades[i * cfg.samples:(i + 1) * cfg.samples] for i in range(len(rows))]
    confidences = [stated_confidence(text) for text in flat]
    result = {"checkpoint": ckpt, "benchmark": name, **score(correct, ks),
              "calibration": confidence_scores(confidences, grades)}
    samples = [{"checkpoint": ckpt, "benchmark": name, "problem": i, "sample": j, "answer": r["answer"],
                "completion": text, "correct": correct[i][j], "confidence": confidences[i * cfg.samples + j]}
               for i, (r, comps) in enumerate(zip(rows, completions, strict=True)) for j, text in enumerate(comps)]
    return result, samples


def _say(cfg: EvalConfig, message: str) -> None:
    if cfg.progress:
        print(f"[eval] {message}", file=sys.stderr, flush=True)


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate `cfg.checkpoints` on `cfg.data` into `cfg.out`; returns the report written to `<out>/eval.json`."""
    with claimed_output(cfg, "eval") as out:
        for ckpt in cfg.checkpoints:
            check_model_path(ckpt, cfg.trust_remote_code, cfg.allow_pickle)
        benchmarks, data_paths = {}, {}
        for path in cfg.data:
            rows = problem_rows(path)
            benchmarks[Path(path).stem] = (rows[: cfg.max_problems] if cfg.max_problems else rows, file_sha256(path))
            data_paths[Path(path).stem] = str(path)
        partial = partial_dir(out)
        if partial.exists() and not partial.is_dir():
            raise RejuvError(f"{partial}: expected the folder where eval keeps finished results, found a file; move "
                             "it away or choose another --out")
        created = not partial.exists()
        partial.mkdir(parents=True, exist_ok=True)
        try:
            report = _evaluate(cfg, out, benchmarks, data_paths, partial)
        except BaseException:
            if created and not any(partial.iterdir()):  # nothing finished: leave nothing behind
                partial.rmdir()
            raise
        shutil.rmtree(partial, ignore_errors=True)
        return report


def _evaluate(cfg: EvalConfig, out: Path, benchmarks: dict, data_paths: dict, partial: Path) -> dict:
    engine_name = choose_engine(cfg.engine)
    ks = cfg.ks
    done: dict[tuple[str, str], dict] = {}
    for ckpt in cfg.checkpoints:
        todo = {}
        for name, (rows, sha) in benchmarks.items():
            unit = partial / f"{_unit_key(ckpt, name, sha, cfg, engine_name, ks)}.json"
            kept = kept_result(unit, name, len(rows), cfg.samples, ks)
            if kept is not None:
                done[ckpt, name] = kept
                _say(cfg, f"{Path(ckpt).name}/{name}: reusing the result kept in {partial}")
            else:
                todo[name] = (rows, unit)
        if not todo:
            continue
        tokenizer = load_tokenizer(ckpt, cfg.trust_remote_code, cfg.base)
        templated = uses_template(tokenizer, cfg.chat_template, ckpt)
        positions = config_positions(ckpt, cfg.base)
        tokenized = {name: [prompt_ids(r["prompt"], tokenizer, templated, where, positions) for where, r in rows]
                     for name, (rows, _) in todo.items()}
        for name, prompts in tokenized.items():
            warn_long_completions(prompts, cfg.max_new_tokens, positions, f"{ckpt} on {data_paths[name]}")
        engine = (VLLMEngine if engine_name == "vllm" else TransformersEngine)(ckpt, _sampling(cfg))
        for name, (rows, unit) in todo.items():
            with progress_bar(cfg.progress, len(rows), f"{Path(ckpt).name}/{name}", "problem") as bar:
                completions = engine.generate(tokenized[name], progress=bar)
            result, samples = _grade(as_given(cfg, ckpt), name, [r for _, r in rows], completions, cfg, ks)
            result["chat_template_used"] = templated
            result["dtype"] = engine.dtype
            done[ckpt, name] = {"result": result, "samples": samples}
            write_atomic(unit, json.dumps(done[ckpt, name]) + "\n")
        del engine
    results = [done[c, name]["result"] for c in cfg.checkpoints for name in benchmarks]
    report = {
        "version": __version__, "engine": engine_name, "config": recorded(cfg),
        "ran": what_ran(eval_device(_sampling(cfg)), dtype_name(_sampling(cfg), engine_name), engine_name),
        "results": results,
        "average_pass@1": {as_given(cfg, c): sum(r["pass@1"] for r in results if r["checkpoint"] == as_given(cfg, c))
                           / len(benchmarks) for c in cfg.checkpoints},
        "sources": sources(cfg),
    }
    with atomic_output_dir(out, cfg.overwrite, command="eval") as tmp:
        (tmp / "eval.json").write_text(strict_dumps(report) + "\n")
        samples = [row for c in cfg.checkpoints for name in benchmarks for row in done[c, name]["samples"]]
        write_jsonl(tmp / "samples.jsonl", samples)
        for relative, content in lm_eval_files(report, samples, data_paths).items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, list):
                write_jsonl(tmp / relative, content)
            else:
                (tmp / relative).write_text(strict_dumps(content) + "\n")
    return report
