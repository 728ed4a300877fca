import importlib.util
import json

import pyarrow.parquet as pq
from click.testing import CliRunner

from rejuv.cli import main

from tiny import build_model, save


def test_export_writes_verl_parquet_and_a_working_reward(tmp_path):
    save(*build_model("llama", seed=0), tmp_path / "ckpt")
    data = tmp_path / "rl.jsonl"
    data.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n"
                    + json.dumps({"prompt": [{"role": "user", "content": "half?"}], "answer": "0.5"}) + "\n")
    result = CliRunner().invoke(main, ["export-verl", "--data", str(data), "--val", str(data), "--out",
                                       str(tmp_path / "verl"), "--model", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(tmp_path / "verl" / "train.parquet").to_pylist()
    assert rows[0] == {"data_source": "rejuv", "prompt": [{"role": "user", "content": "1+1?"}], "ability": "math",
                       "reward_model": {"style": "rule", "ground_truth": "2"},
                       "extra_info": {"split": "train", "index": 0, "answers": ["2"]}}
    assert pq.read_table(tmp_path / "verl" / "val.parquet").to_pylist()[1]["extra_info"]["split"] == "test"
    overrides = (tmp_path / "verl" / "verl_overrides.txt").read_text()
    assert "custom_reward_function.name=compute_score" in overrides and "actor_rollout_ref.model.path=" in overrides
    spec = importlib.util.spec_from_file_location("exported_reward", tmp_path / "verl" / "reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    score = module.compute_score
    assert score("rejuv", "so \\boxed{1/2}", "0.5") == 1.0
    assert score("rejuv", "\\boxed{3}", "2") == -1.0
    assert score("rejuv", "2", "2") == -1.0  # no boxed answer
    again = CliRunner().invoke(main, ["export-verl", "--data", str(data), "--out", str(tmp_path / "verl")])
    assert again.exit_code != 0 and "exists" in again.output
