"""The scripts behind BENCHMARKS.md run, at a tiny size, so a refactor cannot break the commands it quotes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_reset_ratio_runs_and_its_union_grows_with_rho_and_targets(tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "reset_ratio.py"), "--shape", "tiny", "--sft-steps", "3",
                             "--samples", "4", "--work", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{\"base\"")))
    assert row["targets"] == 32 and row["neurons_total"] == 4 * (64 + 32 + 32 + 64 + 128 + 128 + 128)
    union = row["union"]
    for rho in ("0.001", "0.003", "0.01", "0.03"):
        by_targets = [union[f"{rho}@{n}"] for n in (1, 4)]
        assert by_targets == sorted(by_targets)
    for n in (1, 4):
        by_rho = [union[f"{rho}@{n}"] for rho in ("0.001", "0.003", "0.01", "0.03")]
        assert by_rho == sorted(by_rho) and 0 < by_rho[-1] <= 1
    assert "| targets | ρ = 0.001" in result.stdout


def _run(script: str, *args: str) -> list[dict]:
    """Run a benchmark script as BENCHMARKS.md quotes it, at a tiny size; its JSON lines."""
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert rows and "|---|" in result.stdout  # the table BENCHMARKS.md copies
    return rows


@pytest.mark.slow
def test_attribution_cost_runs_with_its_floor():
    rows = _run("attribution_cost.py", "--hidden", "64", "--layers", "2", "--vocab", "256", "--samples", "2",
                "--targets", "4", "--prompt", "8", "--response", "16", "--repeats", "1", "--piece-costs", "1")
    assert rows[0]["targets"] == 8 and min(rows[0][f"{m}_s"] for m in ("floor", "copies", "rejuv", "rejuv@1")) > 0
    assert rows[0]["max_relative_difference"] < 1e-4  # the attribution paths agree, in one piece or several
    assert 0 < rows[0]["one_forward_bound_ratio"] < 1  # the floor's forward of the longest prefix, once per sample
    per_layer = 2 * 64 + 4 * 64 * 64 + 3 * 64 * 256  # two norms, q/k/v/o, gate/up/down (4× MLP)
    assert rows[0]["params"] == 2 * 256 * 64 + 64 + 2 * per_layer  # embedding and head untied, final norm


@pytest.mark.slow
def test_fusion_speed_runs_against_the_copy_floor(tmp_path):
    rows = _run("fusion_speed.py", "--hidden", "64", "--layers", "2", "--vocab", "256", "--repeats", "1",
                "--workdir", str(tmp_path / "work"))
    row = rows[0]
    # the figures the table quotes are the measured ones: the ratio is rejuv's time over the floor's (which the
    # row rounds to 10 ms), the copy took time, and rejuv's run had a footprint
    assert row["rejuv_s"] > 0 and row["peak_rss_mb"] > 0 and row["floor_s"] > 0
    low, high = row["ratio"] * (row["floor_s"] - 0.005) - 0.01, row["ratio"] * (row["floor_s"] + 0.005) + 0.01
    assert low <= row["rejuv_s"] <= high, row


@pytest.mark.slow
def test_stream_memory_runs_every_pass_at_every_size():
    rows = _run("stream_memory.py", "--layers", "1", "2", "--hidden", "64")
    passes = ("fusion", "param_drift", "update")
    assert {(r["pass"], r["layers"]) for r in rows} == {(p, n) for p in passes for n in (1, 2)}
    # the model a pass streams grows with its layers, and each pass's figures are its own process's
    sizes = {r["layers"]: r["model_mb"] for r in rows}
    assert sizes[2] > sizes[1] > 0 and all(r["tensors"] == 2 + 9 * r["layers"] + 1 for r in rows)
    assert all(0 <= r["seconds"] <= r["process_seconds"] for r in rows)  # a pass lasts less than its process


@pytest.mark.slow
def test_apply_time_builds_its_stand_in_and_compares_two_versions_byte_for_byte(tmp_path):
    from safetensors.torch import load_file

    src = str(BENCHMARKS.parent / "src")  # "before" is this checkout too: every output file must be the same
    rows = _run("apply_time.py", "--shape", "tiny", "--calib", "short", "--samples", "4", "--before", src,
                "--work", str(tmp_path))
    runs = [r for r in rows if "version" in r]
    assert sorted(r["version"] for r in runs) == ["before", "now"] and all(r["wall_s"] > 0 for r in runs)
    assert all(r["peak_rss_mb"] > 100 for r in runs)  # the child's own VmHWM: torch loaded
    output = next(r for r in rows if "identical" in r)
    assert "model.safetensors" in output["identical"] and "rejuvenation.json" in output["identical"]
    assert output["different"] == [] and output["missing"] == []
    base = load_file(tmp_path / "tiny-base" / "model.safetensors")
    sft = load_file(tmp_path / "tiny-sft-noise" / "model.safetensors")
    assert base.keys() == sft.keys() and all(t.dtype == sft[k].dtype for k, t in base.items())
    noise = torch.cat([(sft[k].float() - t.float()).flatten() for k, t in base.items()])
    assert 0.009 < float(noise.std()) < 0.011  # the SFT stand-in is the base + 0.01 · N(0, 1)
    assert len((tmp_path / "calib-long.jsonl").read_text().splitlines()) == 32


@pytest.mark.slow
def test_gpu_check_runs_every_stage_on_the_cpu(tmp_path):
    """The script to run when a GPU is lent: at the tiny size on the CPU every stage runs (vLLM's are skipped
    where it is not installed) and the summary holds each stage's figures."""
    out = tmp_path / "check.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--size", "tiny",
                             "--samples", "4", "--work", str(tmp_path / "work"), "--out", str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    summary = json.loads(out.read_text())
    stages = summary["stages"]
    assert summary["ok"] and summary["device"] == "cpu" and summary["gpu"] is None
    assert list(stages) == ["fusion (tiny)", "apply with calibration (tiny)",
                            "apply on the device against the CPU (tiny)", "diagnose (tiny)", "sft (tiny)",
                            "rl, transformers generation (tiny)", "rl, vLLM generation (tiny)",
                            "eval, transformers (tiny)", "eval, vLLM (tiny)", "plan (tiny)"]
    applied = stages["apply with calibration (tiny)"]
    assert applied["targets"] == 4 * 8 and applied["neurons_reset"] > 0 and applied["attribution_over_floor"] > 0
    assert stages["sft (tiny)"]["precision"]["master_weights"] == "float32" and stages["sft (tiny)"]["steps"] > 0
    assert 0 <= stages["eval, transformers (tiny)"]["pass@1"] <= 1
    assert stages["plan (tiny)"]["recommended"]
    assert all(s["ok"] and s.get("seconds", 0) >= 0 for s in stages.values())


def test_gpu_check_records_a_failed_stage_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    check = gpu_check.Check("cpu", "tiny", tmp_path)
    check.stage("breaks", lambda: 1 / 0)
    check.stage("works", lambda: {"figure": 3})
    check.stage("cannot run here", lambda: {}, skip="no vLLM")
    assert check.stages["breaks"]["ok"] is False and "ZeroDivisionError" in check.stages["breaks"]["error"]
    assert check.stages["works"]["ok"] and check.stages["works"]["figure"] == 3
    assert check.stages["cannot run here"] == {"ok": True, "skipped": "no vLLM"}
    assert check.summary()["ok"] is False


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", ""])
def test_gpu_check_refuses_a_device_it_does_not_know_before_building_anything(tmp_path, device):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", device, "--size", "tiny",
                             "--work", str(tmp_path / "work"), "--out", str(tmp_path / "s.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--device: expected cuda, cuda:N or cpu" in result.stderr, result.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "s.json").exists()


@pytest.mark.slow
def test_lora_fusion_compares_the_stream_with_merging_through_peft(tmp_path):
    rows = _run("lora_fusion.py", "--shape", "tiny", "--rank", "4", "--work", str(tmp_path))
    steps = [r["step"] for r in rows if "step" in r]
    assert steps == ["rejuv: fuse the adapter", "PEFT: merge_and_unload, save the merged copy",
                     "rejuv: fuse the merged copy"]
    summary = rows[-1]
    # the two routes differ only by the merged copy's extra rounding to bf16
    assert summary["outputs"]["max_diff_relative_to_tensor_max"] < 2**-6
    assert summary["merge_then_fuse_seconds"] > 0 and summary["stream_peak_mb"] >= 0


def test_probe_length_reads_the_committed_runs():
    rows = _run("probe_length.py", "--records", str(BENCHMARKS / "lab" / "small"))
    summary = rows[-1]
    assert summary["seeds"] == 12 and summary["pairs"] == 12 * 6  # four arms: six pairs a seed
    groups = rows[:-1]
    assert sum(r["pairs"] for r in groups) == summary["pairs"]
    for r in groups:  # a separated pair is counted among the separated ones only
        assert all(r[f"right_order@{n}"] <= r[f"separated@{n}"] <= r["pairs"] for n in summary["lengths"])


def test_same_outputs_sorts_every_file_and_fails_on_a_real_difference(tmp_path):
    """The before/after check of a refactor: paths, times and fingerprints are scrubbed; a value is not."""
    import same_outputs

    for label in ("old", "new"):
        run = tmp_path / label / "demo"
        (run / "seed-0" / f"lm_eval__{str(tmp_path / label).strip('/').replace('/', '__')}__x").mkdir(parents=True)
        (run / "weights.bin").write_bytes(b"\x00\xff")
        (run / "README.md").write_text(f"made from {tmp_path / label}/demo/base\n")
        (run / "report.json").write_text(json.dumps({"accuracy": 0.5, "seconds": 3.1 if label == "old" else 4.2,
                                                     "lines": [f"seed 0 ({1 if label == 'old' else 2}.0 min)"]}))
        step_time = 0.3 if label == "old" else 0.4
        (run / "train_log.jsonl").write_text(json.dumps({"loss": 1.0, "step_time": step_time}) + "\n")
        (run / "seed-0" / f"lm_eval__{str(tmp_path / label).strip('/').replace('/', '__')}__x" / "r.json").write_text(
            "{}")
    found = same_outputs.compare(tmp_path / "old" / "demo", tmp_path / "new" / "demo")
    assert (found["identical"], found["identical_once_paths_scrubbed"]) == (
        ["seed-0/lm_eval__RUN__x/r.json", "weights.bin"], ["README.md"])
    assert found["equal_once_times_scrubbed"] == ["report.json", "train_log.jsonl"]
    assert found["different"] == found["only_before"] == found["only_after"] == []
    assert same_outputs.main([str(tmp_path / "old" / "demo"), str(tmp_path / "new" / "demo")]) == 0

    (tmp_path / "new" / "demo" / "report.json").write_text(json.dumps({"accuracy": 0.6, "seconds": 1.0, "lines": []}))
    (tmp_path / "new" / "demo" / "extra.txt").write_text("x")
    found = same_outputs.compare(tmp_path / "old" / "demo", tmp_path / "new" / "demo")
    assert (found["different"], found["only_after"]) == (["report.json"], ["extra.txt"])
    assert same_outputs.main([str(tmp_path / "old" / "demo"), str(tmp_path / "new" / "demo")]) == 1
    with pytest.raises(SystemExit, match="differ in exactly one folder name"):
        same_outputs.compare(tmp_path / "old" / "demo", tmp_path / "new" / "other")


def test_planner_seeds_prints_each_rules_shortfall_seed_by_seed(tmp_path, monkeypatch, capsys):
    """One row per seed in seed order, shortfalls in points, "–" where a rule's pick is unknown."""
    import planner_seeds

    check = {"post_rl": {"epoch-1": 0.30, "epoch-2": 0.40, "alpha0.5": 0.45}, "best_start": "alpha0.5",
             "shortfall": {"end_reward": 0.05}, "recommended": {"end_reward": "epoch-2"},
             "field": {"lowest_nll": {"pick": "epoch-1", "shortfall": 0.15}, "peak_diversity": None},
             "cheap_search": {"pick": "alpha0.5-rho0", "shortfall": 0.0}}
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"planner": {"rule": "end_reward", "per_seed": {
        "10": check, "2": {**check, "cheap_search": None, "post_rl": {"epoch-1": 0.3, "alpha0.5": 0.45}}}}}))
    monkeypatch.setattr(sys, "argv", ["planner_seeds.py", str(report)])
    planner_seeds.main()
    lines = capsys.readouterr().out.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:3] == ["seed", "best start (pass@1 after RL)", "planner's pick"] and header[-1] == "planner"
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[2:]]
    assert [r["seed"] for r in rows] == ["2", "10"]
    assert rows[1]["best start (pass@1 after RL)"] == "alpha0.5 (45.0)" and rows[1]["planner"] == "5.0"
    assert (rows[1]["lowest_nll"], rows[1]["peak_diversity"], rows[1]["sft_accuracy"]) == ("15.0", "–", "–")
    assert (rows[1]["fused_last_half"], rows[1]["cheap_search"], rows[0]["cheap_search"]) == ("0.0", "0.0", "–")
    report.write_text(json.dumps({"planner": None}))  # a report of another preset: named, no traceback
    with pytest.raises(SystemExit, match="report.json: no planner check in this report"):
        planner_seeds.main()
