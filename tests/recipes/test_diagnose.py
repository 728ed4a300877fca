"""`rejuv diagnose` on tiny models trained here: flags, numbers, schema, a real browser."""

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import torch
from click.testing import CliRunner

from rejuv.api import diagnose
from rejuv.cli import main
from rejuv.diagnostics.params import DriftGroup
from rejuv.diagnostics.report import SCHEMA
from rejuv.errors import RejuvError
from rejuv.recipes.sft import SFTRecipeConfig, run_sft

from tiny import build_model, save


def _rows(rng, n, key):
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        answer = f"{a}+{b}={a + b}. \\boxed{{{a + b}}}"
        rows.append({"prompt": f"compute {a}+{b}.", key: answer} if key != "answer" else
                    {"problem": f"compute {a}+{b}.", "answer": str(a + b)})
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A base, a checkpoint after 1 epoch and one after 16 epochs on the same data."""
    root = tmp_path_factory.mktemp("diag")
    base, tok = build_model("llama", seed=0)
    save(base, tok, root / "base")
    rng = random.Random(0)
    for name, rows in (("sft", _rows(rng, 32, "completion")), ("calib", _rows(rng, 16, "response")),
                       ("bench", _rows(rng, 4, "answer"))):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for epochs in (1, 16):
        run_sft(SFTRecipeConfig(model=str(root / "base"), data=str(root / "sft.jsonl"), out=str(root / f"e{epochs}"),
                                save_epochs=[epochs], learning_rate=3e-3))
    return root


@pytest.fixture(scope="module")
def report_dir(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "rep"
    result = CliRunner().invoke(main, [
        "diagnose", "--base", str(trained / "base"), str(trained / "e1" / "epoch-1"), str(trained / "e16" / "epoch-16"),
        "--calib", str(trained / "calib.jsonl"), "--eval", str(trained / "bench.jsonl"), "--k", "4",
        "--eval-samples", "4", "--eval-max-new-tokens", "12", "--rl-data", str(trained / "bench.jsonl"),
        "--group-size", "4", "--prompts-per-step", "2", "--rl-samples", "6", "--rl-max-new-tokens", "12",
        "--coverage-k", "5", "--chat-template", "never", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "epoch-16" in result.stdout and "OVER-TRAINED" in result.stdout
    return out


@pytest.mark.slow
def test_the_dead_group_forecast_is_the_arithmetic_on_the_sampled_pass_rates(report_dir):
    """Per checkpoint: from c of 6 samples at temperature 1.0 on each RL prompt, the share of groups of 4 whose
    samples would all get one reward, C(c,4)/C(6,4) + C(6−c,4)/C(6,4) averaged over the prompts."""
    from math import comb

    report = json.loads((report_dir / "report.json").read_text())
    forecast = json.loads((report_dir / "forecast" / "eval.json").read_text())
    assert forecast["config"]["temperature"] == 1.0 and forecast["config"]["samples"] == 6
    for entry, result in zip(report["checkpoints"], forecast["results"], strict=True):
        counts, groups = result["correct_per_problem"], entry["groups"]
        expected = sum(comb(c, 4) + comb(6 - c, 4) for c in counts) / comb(6, 4) / len(counts)
        assert groups["dead_share"] == pytest.approx(expected) and groups["group_size"] == 4
        assert groups["signal_prompts_per_step"] == pytest.approx(2 * (1 - expected))


@pytest.mark.slow
def test_coverage_and_diversity_are_read_from_the_base_and_checkpoints_samples(report_dir):
    """TailSFT's pass@K against the base's and AESL's 1 − self-BLEU, from K samples per RL prompt of each model
    at the forecast's temperature."""
    from rejuv.diagnostics.diversity import sample_diversity

    report = json.loads((report_dir / "report.json").read_text())
    sampled = json.loads((report_dir / "coverage" / "eval.json").read_text())
    assert sampled["config"]["samples"] == 5 and sampled["config"]["temperature"] == 1.0
    base, *checkpoints = sampled["results"]  # the base is sampled first
    rows = [json.loads(line) for line in (report_dir / "coverage" / "samples.jsonl").read_text().splitlines()]
    assert report["base"]["coverage"]["pass@k"] == base["pass@k"]["5"]
    for entry, result in zip(report["checkpoints"], checkpoints, strict=True):
        found = entry["coverage"]
        assert (found["k"], found["pass@k"], found["base_pass@k"]) == (5, result["pass@k"]["5"], base["pass@k"]["5"])
        assert found["ratio"] == (pytest.approx(found["pass@k"] / found["base_pass@k"]) if found["base_pass@k"]
                                  else None)
        groups = {}
        for row in rows:
            if row["checkpoint"] == result["checkpoint"]:
                groups.setdefault(row["problem"], []).append(row["completion"])
        assert found["diversity"] == pytest.approx(sample_diversity(list(groups.values()))["diversity"])
        assert found["prompts"] == len(groups) == 4 and found["samples_per_prompt"] == 5


def test_coverage_needs_two_samples_and_the_rl_prompts(tmp_path):
    from rejuv.options import OptionError
    from rejuv.recipes.diagnose import DiagnoseConfig

    given = dict(base=str(tmp_path), checkpoints=[str(tmp_path)], calib="c.jsonl", out=str(tmp_path / "o"))
    with pytest.raises(OptionError, match="coverage_k.*1 sample per prompt has no diversity"):
        DiagnoseConfig(**given, rl_data="rl.jsonl", coverage_k=1)
    with pytest.raises(OptionError, match="coverage_k.*give --rl-data too"):
        DiagnoseConfig(**given, coverage_k=16)


@pytest.mark.slow
def test_the_longer_trained_checkpoint_is_flagged(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    short, long = report["checkpoints"]
    assert long["outputs"]["mean_entropy"] < 0.5 * short["outputs"]["mean_entropy"]
    assert long["params"]["model"]["rel"] > 2 * short["params"]["model"]["rel"]
    assert long["flagged"] and not short["flagged"]
    assert {"entropy", "drift"} <= set(long["signals"])
    assert (short["rank"], long["rank"]) == (1, 2)
    assert long["outputs"]["entropy_gap_to_base"] < short["outputs"]["entropy_gap_to_base"] < 0
    assert long["outputs"]["top1_mass"] > short["outputs"]["top1_mass"]
    assert long["outputs"]["tokens_lost_entropy"][0]["count"] >= 1
    assert report["sampling"]["samples"] == 4 and report["sampling"]["problems"] == 4
    assert json.loads((report_dir / "eval" / "eval.json").read_text())["config"]["chat_template"] == "never"
    assert 0 <= long["sampling"]["pass@1"] <= long["sampling"]["pass@k"] <= 1
    kinds = set(long["params"]["by_kind"])
    assert {"q_proj", "down_proj", "embedding", "norm"} <= kinds
    assert set(long["params"]["by_layer"]) == {"0", "1"}


@pytest.mark.slow
def test_report_matches_its_schema(report_dir):
    schema = json.loads(Path(SCHEMA).read_text())
    report = json.loads((report_dir / "report.json").read_text())
    jsonschema.validate(report, schema)
    assert (report["ran"]["device"], report["ran"]["dtype"], report["ran"]["engine"]) == ("cpu", "float32",
                                                                                         "transformers")
    broken = json.loads(json.dumps(report))
    broken["checkpoints"][0]["outputs"]["top1_mass"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    assert sorted(report["plots"]) == ["across_checkpoints.png", "drift_heatmap.png", "entropy_histograms.png"]
    for name in report["plots"]:
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not _chromium() and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_html_report_renders_in_headless_chromium(report_dir, tmp_path):
    browser = _chromium()
    assert browser, "CI installs chromium (.ci/run); it is missing"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,1800", "--virtual-time-budget=5000"]
    url = (report_dir / "report.html").as_uri()
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="3"' in dom and 'data-images-loaded="3"' in dom  # every plot decoded by the browser
    assert '<table id="ranking">' in dom and "epoch-16" in dom and "over-trained" in dom
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a page with plots, not a blank one


@pytest.mark.slow
def test_identical_checkpoints_have_zero_drift_and_zero_gap(trained, tmp_path):
    shutil.copytree(trained / "base", tmp_path / "copy")
    report = diagnose(trained / "base", [tmp_path / "copy"], trained / "calib.jsonl", tmp_path / "rep", progress=False)
    (entry,) = report["checkpoints"]
    model = entry["params"]["model"]
    assert model["l2"] == 0 and model["max_abs"] == 0 and model["frac_changed"]["exact"] == 0
    assert model["kurtosis"] is None and model["top_0.1pct_share"] == 0
    assert entry["outputs"]["entropy_gap_to_base"] == 0
    assert not entry["flagged"]


@pytest.mark.slow
def test_reference_adds_what_each_update_changed(trained, tmp_path):
    """--reference: the start compared with itself changed nothing and kept every spike; the longer-trained
    checkpoint changed entries the start never moved, so the pair's overlap is 0. Schema, page and summary
    carry the figures."""
    start, longer = trained / "e1" / "epoch-1", trained / "e16" / "epoch-16"
    result = CliRunner().invoke(main, [
        "diagnose", "--base", str(trained / "base"), str(start), str(longer), "--reference", str(start),
        "--calib", str(trained / "calib.jsonl"), "--chat-template", "never", "--out", str(tmp_path / "rep"),
        "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    jsonschema.validate(report, json.loads(Path(SCHEMA).read_text()))
    same, moved = report["update"]["checkpoints"]
    assert same["model"]["changed_exact"] == 0 and same["spikes"]["kept"] == 1.0
    assert same["rank"]["all"]["unchanged"] == same["rank"]["all"]["matrices"] > 0
    assert 0.5 < moved["model"]["changed_exact"] <= 1 and moved["spikes"]["spikes"] > 0
    assert moved["rank"]["all"]["median_energy_rank_share"] > 0
    assert set(moved["by_kind"]) >= {"q_proj", "down_proj", "embedding"}
    assert report["update"]["overlap"] == [{"a": 0, "b": 1, "jaccard": 0.0, "random_jaccard": 0.0}]
    assert set(report["update"]["stored_dtypes"]["start"]) == {"F32"}
    assert "changed 0.00% of entries exactly (0.00% in a bf16 copy)" in result.stdout
    assert "overlap epoch-1 / epoch-16" in result.stdout
    html = (tmp_path / "rep" / "report.html").read_text()
    assert 'id="update"' in html and "What each update changed" in html


def test_pooled_statistics_equal_direct_ones():
    torch.manual_seed(0)
    parts = [torch.randn(300) * 0.01, torch.randn(50, 20) ** 3, torch.zeros(7)]
    pooled = DriftGroup()
    for p in parts:
        one = DriftGroup()
        one.add(p, torch.ones_like(p), torch.ones_like(p) + p)
        pooled.merge(one)
    direct = DriftGroup()
    flat = torch.cat([p.flatten() for p in parts])
    direct.add(flat, torch.ones_like(flat), torch.ones_like(flat) + flat)
    a, b = pooled.summary(), direct.summary()
    for key in ("numel", "l2", "max_abs", "kurtosis", "norm", "frac_changed", "top_0.1pct_share"):
        assert a[key] == pytest.approx(b[key], rel=1e-9), key
    d = flat.double()
    kurt = float(((d - d.mean()) ** 4).mean() / ((d - d.mean()) ** 2).mean() ** 2 - 3)
    assert a["kurtosis"] == pytest.approx(kurt, rel=1e-6)
    k = -(-len(d) // 1000)
    exact_share = float(d.pow(2).topk(k).values.sum() / d.pow(2).sum())
    assert a["top_0.1pct_share"] == pytest.approx(exact_share, rel=0.03)  # histogram bins are 0.01 decade


@pytest.mark.slow
def test_diagnose_bad_input(trained, tmp_path):
    qwen, tok = build_model("qwen3", seed=0)
    save(qwen, tok, tmp_path / "qwen")
    (tmp_path / "calib_bad.jsonl").write_text(json.dumps({"question": "q"}) + "\n")
    common = dict(base=trained / "base", out=tmp_path / "rep")
    with pytest.raises(RejuvError, match="architectures differ"):
        diagnose(checkpoints=[tmp_path / "qwen"], calib=trained / "calib.jsonl", **common)
    with pytest.raises(RejuvError, match=r"calib_bad\.jsonl:1: expected 'prompt'\+'completion'"):
        diagnose(checkpoints=[trained / "e1" / "epoch-1"], calib=tmp_path / "calib_bad.jsonl", **common)
    with pytest.raises(RejuvError, match="architectures differ"):
        diagnose(checkpoints=[trained / "e1" / "epoch-1"], calib=trained / "calib.jsonl",
                 reference=str(tmp_path / "qwen"), **common)
    with pytest.raises(RejuvError, match=r"rank_energy: must lie in \(0, 1\], got 1.5"):
        diagnose(checkpoints=[trained / "e1" / "epoch-1"], calib=trained / "calib.jsonl", rank_energy=1.5, **common)
    with pytest.raises(RejuvError, match="k: 8 is larger than the 4 samples drawn"):
        diagnose(checkpoints=[trained / "e1" / "epoch-1"], calib=trained / "calib.jsonl",
                 eval=str(trained / "bench.jsonl"), k=8, evaluation={"samples": 4}, **common)
    assert not (tmp_path / "rep").exists()


@pytest.mark.slow
def test_per_tensor_top_share_is_exact(tmp_path):
    """The histogram only narrows the search: the share equals a full sort's, whatever the distribution."""
    from rejuv.diagnostics.params import _tensor_top_share

    gen = torch.Generator().manual_seed(0)
    spiky = torch.randn(3000, 7, generator=gen) * 1e-4
    spiky[5, 3], spiky[17, 0] = 0.5, -0.25
    sparse = torch.zeros(5000)
    sparse[:3] = torch.tensor([1e-3, -2e-3, 1e-14])  # fewer nonzero entries than k = 5: share 1
    tiny = torch.randn(40_000, generator=gen) * 1e-13  # the k-th largest sits in the lowest bins
    cases = {"gaussian": torch.randn(2_100_001, generator=gen), "spiky": spiky, "sparse": sparse, "tiny": tiny,
             "zeros": torch.zeros(10)}
    for name, delta in cases.items():
        group = DriftGroup()
        group.add(delta, torch.zeros_like(delta), delta)
        sq = delta.double().flatten().pow(2)
        k = -(-sq.numel() // 1000)
        exact = float(sq.topk(k).values.sum() / sq.sum()) if sq.sum() > 0 else 0.0
        assert _tensor_top_share(delta, group) == pytest.approx(exact, rel=1e-12, abs=1e-300), name


def test_drift_of_a_checkpoint_with_nan_weights_is_an_error_naming_the_tensor(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    from rejuv.diagnostics.params import parameter_drift
    from rejuv.io.reader import Checkpoint

    for name, value in (("base", 1.0), ("sft", float("nan"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text('{"model_type": "llama"}')
        weights = np.ones((3, 4), dtype=np.float32)
        weights[1, 2] = value
        save_file({"model.layers.0.mlp.down_proj.weight": weights}, str(tmp_path / name / "model.safetensors"))
    with Checkpoint(tmp_path / "base") as base, Checkpoint(tmp_path / "sft") as sft:
        with pytest.raises(RejuvError, match=r"sft: tensor model.layers.0.mlp.down_proj.weight holds NaN or Inf"):
            parameter_drift(base, sft, ["model.layers.0.mlp.down_proj.weight"])


def test_tokens_that_lost_entropy_are_shown_as_read():
    """A byte-level BPE vocabulary stores ` the` as `Ġthe`: the report gives both, labelled, sorted by the
    total entropy drop."""
    import torch

    from rejuv.diagnostics.outputs import output_stats
    from rejuv.method.attribution import TokenStats
    from rejuv.report.html import readable

    from tiny import make_bpe_chat_tokenizer

    tok = make_bpe_chat_tokenizer()
    ids = tok(" the answer", add_special_tokens=False)["input_ids"]
    n = len(ids)

    def stats(entropy):
        return TokenStats(torch.tensor(entropy), torch.full((n,), 0.5), torch.zeros(n, dtype=torch.long),
                          torch.full((n,), -1.0))

    out = output_stats([stats([0.1] * n)], [stats([1.0 + i for i in range(n)])], [ids], len(tok), tok)
    first = out["tokens_lost_entropy"][0]
    assert first["token"] == tok.convert_ids_to_tokens(first["token_id"])
    assert first["text"] == tok.decode([first["token_id"]])
    assert [t["total_entropy_drop"] for t in out["tokens_lost_entropy"]] == sorted(
        (t["total_entropy_drop"] for t in out["tokens_lost_entropy"]), reverse=True)
    assert any(t["token"].startswith("Ġ") and t["text"].startswith(" ") for t in out["tokens_lost_entropy"])
    assert readable(" the") == "␣the" and readable("the") == "the" and readable("a\n") == "a⏎"
