"""`rejuv export-verl`: an RL dataset and reward in the layout verl's GRPO trainer reads.

verl's RL data is parquet with columns `data_source`, `prompt` (chat
messages), `ability`, `reward_model` (`{"style": "rule", "ground_truth": ...}`)
and `extra_info` (`{"split", "index"}`); a custom reward is a Python file with
`compute_score(data_source, solution_str, ground_truth, extra_info)`. The
exported folder holds `train.parquet` (and `val.parquet`), `reward.py` and
`verl_overrides.txt` with the command-line overrides that wire them together.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from rejuv.data.rows import problem_records
from rejuv.io.output import atomic_output_dir, claimed_output
from rejuv.modeling import allow_pickle_option, check_model_path, trust_remote_code_option
from rejuv.options import Config, Recipe, option, out_option, overwrite_option


def verl_rows(path: str | Path, split: str, data_source: str, ability: str,
              system_prompt: str | None = None) -> list[dict]:
    rows = []
    for i, record in enumerate(problem_records(path)):
        prompt = record["prompt"]
        answers = record["answer"] if isinstance(record["answer"], list) else [record["answer"]]
        messages = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        if system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}] + messages
        rows.append({
            "data_source": data_source,
            "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
            "ability": ability,
            "reward_model": {"style": "rule", "ground_truth": answers[0]},
            "extra_info": {"split": split, "index": i, "answers": answers},
        })
    return rows


@dataclass
class ExportVerlConfig(Config):
    """Write parquet + reward.py for verl's GRPO trainer, and the overrides that use them."""

    data: str = option(help="RL prompts with answers (JSONL/parquet).", path="file")
    out: str = out_option("Output folder.")
    val: str | None = option(None, help="Validation prompts with answers.", path="file")
    model: str | None = option(None, help="Starting checkpoint (e.g. a rejuvenated one), written into the overrides.",
                               path="checkpoint")
    data_source: str = option("rejuv", help="verl's data_source field of every row.")
    ability: str = option("math", help="verl's ability field of every row.")
    system_prompt: str | None = option(None, help="Prepended as a system message.")
    overwrite: bool = overwrite_option()
    trust_remote_code: bool = trust_remote_code_option()
    allow_pickle: bool = allow_pickle_option()


def run_export_verl(cfg: ExportVerlConfig) -> dict:
    """Run `rejuv export-verl`; returns the summary it prints."""
    with claimed_output(cfg, "export-verl") as out:
        return _export(cfg, out)


def _export(cfg: ExportVerlConfig, out_path: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if cfg.model:
        check_model_path(cfg.model, cfg.trust_remote_code, cfg.allow_pickle)
    splits = {"train": verl_rows(cfg.data, "train", cfg.data_source, cfg.ability, cfg.system_prompt)}
    if cfg.val:
        splits["val"] = verl_rows(cfg.val, "test", cfg.data_source, cfg.ability, cfg.system_prompt)
    with atomic_output_dir(out_path, cfg.overwrite, command="export-verl") as tmp:
        for split, rows in splits.items():
            pq.write_table(pa.Table.from_pylist(rows), tmp / f"{split}.parquet")
        shutil.copyfile(Path(__file__).parents[1] / "evaluation" / "verl_reward.py", tmp / "reward.py")
        final = out_path.resolve()
        overrides = [
            "algorithm.adv_estimator=grpo",
            f"data.train_files={final / 'train.parquet'}",
            f"data.val_files={final / ('val.parquet' if cfg.val else 'train.parquet')}",
            f"custom_reward_function.path={final / 'reward.py'}",
            "custom_reward_function.name=compute_score",
            "actor_rollout_ref.actor.use_kl_loss=True",
            "actor_rollout_ref.actor.kl_loss_coef=0.001",
            "actor_rollout_ref.rollout.n=8",
        ]
        if cfg.model:
            overrides.insert(1, f"actor_rollout_ref.model.path={Path(cfg.model).resolve()}")
        (tmp / "verl_overrides.txt").write_text("python3 -m verl.trainer.main_ppo \\\n    "
                                                + " \\\n    ".join(overrides) + "\n")
    return {"out": str(out_path), "rows": {k: len(v) for k, v in splits.items()}, "overrides": overrides}


RECIPE = Recipe(ExportVerlConfig, run_export_verl, lambda cfg, summary: json.dumps(summary, indent=2))
