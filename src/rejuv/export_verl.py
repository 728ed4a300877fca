"""`rejuv export-verl`: an RL dataset and reward in the layout verl's GRPO trainer reads.

verl's RL data is parquet with columns `data_source`, `prompt` (chat
messages), `ability`, `reward_model` (`{"style": "rule", "ground_truth": ...}`)
and `extra_info` (`{"split", "index"}`); a custom reward is a Python file with
`compute_score(data_source, solution_str, ground_truth, extra_info)`. The
exported folder holds `train.parquet` (and `val.parquet`), `reward.py` and
`verl_overrides.txt` with the command-line overrides that wire them together.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rejuv.checkpoint import atomic_output_dir, check_output_free
from rejuv.data import problem_records


def verl_rows(path: str | Path, split: str, data_source: str, ability: str,
              system_prompt: str | None = None) -> list[dict]:
    rows = []
    for i, record in enumerate(problem_records(path)):
        prompt = record["prompt"]
        messages = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        if system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}] + messages
        rows.append({
            "data_source": data_source,
            "prompt": [{"role": m["role"], "content": m["content"]} for m in messages],
            "ability": ability,
            "reward_model": {"style": "rule", "ground_truth": record["answer"]},
            "extra_info": {"split": split, "index": i},
        })
    return rows


def export_verl(data: str, out: str, val: str | None = None, model: str | None = None,
                data_source: str = "rejuv", ability: str = "math", system_prompt: str | None = None,
                overwrite: bool = False) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_path = Path(out)
    check_output_free(out_path, overwrite, inputs=(Path(data),))
    splits = {"train": verl_rows(data, "train", data_source, ability, system_prompt)}
    if val:
        splits["val"] = verl_rows(val, "test", data_source, ability, system_prompt)
    with atomic_output_dir(out_path, overwrite) as tmp:
        for split, rows in splits.items():
            pq.write_table(pa.Table.from_pylist(rows), tmp / f"{split}.parquet")
        shutil.copyfile(Path(__file__).with_name("verl_reward.py"), tmp / "reward.py")
        final = out_path.resolve()
        overrides = [
            "algorithm.adv_estimator=grpo",
            f"data.train_files={final / 'train.parquet'}",
            f"data.val_files={final / ('val.parquet' if val else 'train.parquet')}",
            f"custom_reward_function.path={final / 'reward.py'}",
            "custom_reward_function.name=compute_score",
            "actor_rollout_ref.actor.use_kl_loss=True",
            "actor_rollout_ref.actor.kl_loss_coef=0.001",
            "actor_rollout_ref.rollout.n=8",
        ]
        if model:
            overrides.insert(1, f"actor_rollout_ref.model.path={Path(model).resolve()}")
        (tmp / "verl_overrides.txt").write_text("python3 -m verl.trainer.main_ppo \\\n    "
                                                + " \\\n    ".join(overrides) + "\n")
    return {"out": str(out_path), "rows": {k: len(v) for k, v in splits.items()}, "overrides": overrides}
