"""`rejuv apply` end to end on the tiny models of every architecture."""

import json
import random
import re
import shutil

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rejuv import fuse, rejuvenate
from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.io.reader import Checkpoint
from rejuv.recipes.apply import ApplyConfig, run_apply

from tiny import assert_fusion_with_resets, build_model, perturbed, save, tree_digest, weights

SPEC_KEYS = {"base", "sft", "alpha", "rho", "targets_per_sample", "calibration", "neurons_total", "neurons_reset",
             "effective_reset_ratio", "reset", "dla_reconstruction_error", "entropy", "seed", "version"}


@pytest.mark.slow
def test_manifest_lists_exactly_what_differs_from_the_fusion(pair, calib_file, tmp_path):
    arch, base, sft = pair
    alpha = 0.6
    manifest = rejuvenate(base, sft, calib_file, tmp_path / "out", alpha=alpha, rho=0.02, progress=False)
    assert SPEC_KEYS <= manifest.keys()
    assert manifest["calibration"]["samples"] == 12
    assert manifest["ran"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # the default
    assert manifest["dla_reconstruction_error"]["max_abs"] < 1e-3
    assert all(isinstance(v, float) for v in manifest["entropy"].values())
    assert manifest["neurons_reset"] == sum(len(r["indices"]) for n, r in manifest["reset"].items()
                                            if n.endswith(".weight"))
    assert manifest["effective_reset_ratio"] == manifest["neurons_reset"] / manifest["neurons_total"]
    assert 0 < manifest["neurons_reset"] < manifest["neurons_total"]
    if arch == "qwen2":  # reader biases are reset with their rows
        biases = [n for n in manifest["reset"] if n.endswith(".bias")]
        assert biases and all(manifest["reset"][n] == manifest["reset"][n[: -len("bias")] + "weight"] for n in biases)
    assert_fusion_with_resets(tmp_path / "out", base, sft, alpha, manifest["reset"])


@pytest.mark.slow
def test_output_loads_and_generates(pair, calib_file, tmp_path):
    arch, base, sft = pair
    rejuvenate(base, sft, calib_file, tmp_path / "out", progress=False)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tok("compute 3+4.", return_tensors="pt")["input_ids"]
    generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 5 or generated[0, -1] == tok.eos_token_id
    assert model.config.model_type == arch


@pytest.mark.slow
def test_alpha_one_rho_zero_is_the_sft_model_and_alpha_zero_the_base(llama_pair, calib_file, tmp_path):
    base, sft = llama_pair
    rejuvenate(base, sft, calib_file, tmp_path / "one", alpha=1.0, rho=0.0, progress=False)
    rejuvenate(base, sft, calib_file, tmp_path / "zero", alpha=0.0, rho=0.0, progress=False)
    for out, ref in (("one", sft), ("zero", base)):
        got, want = weights(tmp_path / out), weights(ref)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert json.loads((tmp_path / "one" / "rejuvenation.json").read_text())["neurons_reset"] == 0


@pytest.mark.slow
def test_sharded_input_gives_the_same_bytes_and_runs_are_deterministic(tmp_path, calib_file):
    base, tok = build_model("qwen3", seed=0)
    sft = perturbed(base, seed=1)
    save(base, tok, tmp_path / "b")
    save(sft, tok, tmp_path / "s")
    save(sft, tok, tmp_path / "s_sharded", max_shard_size="10KB")
    save(base, tok, tmp_path / "b_sharded", max_shard_size="10KB")
    common = dict(alpha=0.5, rho=0.02, seed=3, progress=False, max_shard_size="30KB")
    rejuvenate(tmp_path / "b", tmp_path / "s", calib_file, tmp_path / "o1", **common)
    rejuvenate(tmp_path / "b", tmp_path / "s", calib_file, tmp_path / "o2", **common)
    rejuvenate(tmp_path / "b_sharded", tmp_path / "s_sharded", calib_file, tmp_path / "o3", **common)
    assert len(list((tmp_path / "o1").glob("model-*.safetensors"))) > 1
    assert tree_digest(tmp_path / "o1") == tree_digest(tmp_path / "o2")
    m1 = json.loads((tmp_path / "o1" / "rejuvenation.json").read_text())
    m3 = json.loads((tmp_path / "o3" / "rejuvenation.json").read_text())
    for key in ("reset", "entropy", "neurons_reset", "dla_reconstruction_error"):
        assert m1[key] == m3[key]
    for f in (tmp_path / "o1").glob("model*"):
        assert f.read_bytes() == (tmp_path / "o3" / f.name).read_bytes(), f.name
    AutoModelForCausalLM.from_pretrained(tmp_path / "o1")  # a sharded output with its index loads


@pytest.mark.slow
def test_a_planted_neuron_is_found_and_its_reset_restores_entropy(tmp_path):
    """A down_proj neuron in the last layer of the 'SFT' model writes the unembedding direction of 'z'."""
    base, tok = build_model("llama", seed=0)
    with torch.no_grad():
        base.lm_head.weight.mul_(20)  # logits large enough for confidence to be possible
    sft = perturbed(base, seed=1, scale=0.02)
    y, neuron = tok.convert_tokens_to_ids("z"), 17
    mlp = sft.model.layers[-1].mlp
    with torch.no_grad():
        v = torch.randn(32, generator=torch.Generator().manual_seed(5))
        mlp.gate_proj.weight[neuron] = mlp.up_proj.weight[neuron] = 4 * v / v.norm()  # silu(u)·u ≥ 0: always on
        mlp.down_proj.weight[:, neuron] = 10 * sft.lm_head.weight[y] / sft.lm_head.weight[y].norm()
    save(base, tok, tmp_path / "b")
    save(sft, tok, tmp_path / "s")
    rng = random.Random(0)
    calib = tmp_path / "c.jsonl"
    calib.write_text("".join(json.dumps({"prompt": "say:", "response": "".join(rng.choice("zzzzabc")
                                                                              for _ in range(12))}) + "\n"
                             for _ in range(16)))
    m = rejuvenate(tmp_path / "b", tmp_path / "s", calib, tmp_path / "o", alpha=1.0, rho=0.005, progress=False)
    assert neuron in m["reset"]["model.layers.1.mlp.down_proj.weight"]["indices"]
    assert m["entropy"]["sft"] < 0.2 < 2.0 < m["entropy"]["base"]
    assert m["entropy_at_targets"]["rejuvenated"] > 10 * m["entropy_at_targets"]["sft"]
    assert m["entropy"]["rejuvenated"] > 2.0 and m["effective_reset_ratio"] < 0.1


def _cli(args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
def test_cli_reads_yaml_and_command_line_wins(llama_pair, calib_file, tmp_path):
    base, sft = llama_pair
    config = tmp_path / "apply.yaml"
    config.write_text(yaml.safe_dump({"base": str(base), "sft": str(sft), "calib": str(calib_file),
                                      "out": str(tmp_path / "out"), "alpha": 0.7, "rho": 0.03,
                                      "targets-per-sample": 4, "progress": False}))
    result = _cli(["apply", "--config", config, "--rho", "0.01"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "rejuvenation.json").read_text())
    assert (manifest["alpha"], manifest["rho"], manifest["targets_per_sample"]) == (0.7, 0.01, 4)
    assert json.loads(result.stdout)["neurons_reset"] == manifest["neurons_reset"]
    config.write_text(yaml.safe_dump({"base": str(base), "colour": "blue"}))
    bad = _cli(["apply", "--config", config])
    assert bad.exit_code != 0 and "unknown option 'colour'" in bad.output


@pytest.fixture
def bad_inputs(tmp_path, llama_pair):
    """Checkpoints and calibration files, each wrong in one way."""
    base, sft = llama_pair
    qwen, tok = build_model("qwen3", seed=0)
    save(qwen, tok, tmp_path / "qwen")
    shutil.copytree(sft, tmp_path / "missing")
    state = load_file(tmp_path / "missing" / "model.safetensors")
    del state["model.layers.0.self_attn.k_proj.weight"]
    save_file(state, tmp_path / "missing" / "model.safetensors", metadata={"format": "pt"})
    shutil.copytree(sft, tmp_path / "truncated")
    data = (tmp_path / "truncated" / "model.safetensors").read_bytes()
    (tmp_path / "truncated" / "model.safetensors").write_bytes(data[:-64])
    shutil.copytree(sft, tmp_path / "pickle")
    (tmp_path / "pickle" / "model.safetensors").unlink()
    torch.save(load_file(sft / "model.safetensors"), tmp_path / "pickle" / "pytorch_model.bin")
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "malformed.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": 3}\n')
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep.txt").write_text("mine")
    return tmp_path


@pytest.mark.parametrize("case, message", [
    ("arch", "architectures differ"),
    ("missing", "model.layers.0.self_attn.k_proj.weight"),
    ("truncated", "truncated or corrupt"),
    ("pickle", "allow-pickle"),
    ("empty", "has no rows"),
    ("malformed", "malformed.jsonl:2"),
    ("exists", "output folder exists"),
    ("alpha", r"--alpha: must lie in \[0, 1\]"),
    ("rho", r"--rho: must lie in \[0, 1\)"),
    ("no-calib", "needs a calibration file"),
    ("out-is-input", "may not be an input"),
    ("device", "--device: expected cpu, cuda, cuda:N or auto"),
    ("workers", "--workers: must be ≥ 1"),
])
@pytest.mark.slow
def test_bad_input_fails_cleanly_and_touches_nothing(bad_inputs, llama_pair, calib_file, case, message):
    root = bad_inputs
    base, sft = llama_pair
    args = {"--base": base, "--sft": sft, "--calib": calib_file, "--out": root / "out"}
    if case in ("arch", "missing", "truncated", "pickle"):
        args["--sft"] = root / {"arch": "qwen"}.get(case, case)
    elif case in ("empty", "malformed"):
        args["--calib"] = root / f"{case}.jsonl"
    elif case == "exists":
        args["--out"] = root / "exists"
    elif case == "no-calib":
        del args["--calib"]
    elif case == "out-is-input":
        args["--out"] = args["--sft"]
    extra = {"alpha": ["--alpha", "1.5"], "rho": ["--rho", "1.0"], "out-is-input": ["--overwrite"],
             "device": ["--device", "tpu"], "workers": ["--workers", "0"]}.get(case, [])
    inputs = [p for p in (args["--base"], args["--sft"], args.get("--calib")) if p is not None]
    before = [tree_digest(p) if p.is_dir() else p.read_bytes() for p in inputs]
    listing = sorted(p.name for p in root.iterdir())
    result = _cli(["apply", "--no-progress", *[x for kv in args.items() for x in kv], *extra])
    assert result.exit_code != 0
    assert message in result.output or __import__("re").search(message, result.output), result.output
    assert sorted(p.name for p in root.iterdir()) == listing  # no output, no temporary folder left
    assert [tree_digest(p) if p.is_dir() else p.read_bytes() for p in inputs] == before
    if case == "exists":
        assert (root / "exists" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_pickle_is_accepted_when_allowed(bad_inputs, llama_pair, calib_file):
    base, _ = llama_pair
    result = _cli(["apply", "--no-progress", "--base", base, "--sft", bad_inputs / "pickle", "--calib", calib_file,
                   "--out", bad_inputs / "out", "--allow-pickle"])
    assert result.exit_code == 0, result.output
    assert (bad_inputs / "out" / "model.safetensors").exists()


def test_cli_fusion_only_needs_no_calibration(llama_pair, tmp_path):
    base, sft = llama_pair
    result = _cli(["apply", "--no-progress", "--base", base, "--sft", sft, "--out", tmp_path / "fused",
                   "--fusion-only", "--alpha", "0.25"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "fused" / "rejuvenation.json").read_text())
    assert manifest["fusion_only"] and manifest["calibration"] is None and manifest["reset"] == {}
    assert manifest["alpha"] == 0.25 and manifest["rho"] == 0.0
    assert set(manifest["entropy"].values()) == {None}
    assert manifest["ran"]["device"] is None  # nothing ran on a device


def test_default_device_is_the_gpu_when_one_is_visible(monkeypatch):
    from rejuv.modeling import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == "cpu" and resolve_device("auto") == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == "cuda" and resolve_device("cpu") == "cpu"


@pytest.mark.slow
def test_console_script_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "rejuv"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "rejuv" in out.stdout
    (tmp_path / "empty").mkdir()
    bad = subprocess.run([str(exe), "apply", "--base", str(tmp_path / "empty"), "--sft", str(tmp_path / "empty"),
                          "--out", str(tmp_path / "o"), "--fusion-only"], capture_output=True, text=True)
    assert bad.returncode != 0 and "config.json" in bad.stderr


@pytest.mark.slow
def test_fusion_only_never_imports_torch(llama_pair, tmp_path):
    """`import torch` is most of a fusion's fixed cost on a 1B model; the fusion path must not need it."""
    import subprocess
    import sys

    base, sft = llama_pair
    script = ("import sys\nfrom rejuv.cli import main\n"
              f"main(['apply', '--no-progress', '--base', {str(base)!r}, '--sft', {str(sft)!r}, "
              f"'--out', {str(tmp_path / 'fused')!r}, '--fusion-only'], standalone_mode=False)\n"
              "print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
    fused, s, b = Checkpoint(tmp_path / "fused"), Checkpoint(sft), Checkpoint(base)
    for name in fused.names():
        expected = (0.5 * s.read(name).float() + 0.5 * b.read(name).float()).to(s.read(name).dtype)
        assert torch.equal(fused.read(name), expected), name


@pytest.mark.slow
def test_the_manifest_reads_rho_against_the_union(llama_pair, calib_file, tmp_path):
    base, sft = llama_pair
    m = rejuvenate(base, sft, calib_file, tmp_path / "out", rho=0.02, max_reset_share=0.001, progress=False)
    for groups in (m["reset_by_kind"], m["reset_by_layer"]):
        assert sum(g["reset"] for g in groups.values()) == m["neurons_reset"]
        assert sum(g["total"] for g in groups.values()) == m["neurons_total"]
        assert all(g["ratio"] == g["reset"] / g["total"] for g in groups.values())
    assert set(m["reset_by_kind"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    grid = m["rho_grid"]
    assert [g["rho"] for g in grid] == [0.002, 0.006, 0.02, 0.06]
    chosen = next(g for g in grid if g["rho"] == 0.02)
    assert chosen["effective_reset_ratio"] == m["effective_reset_ratio"]
    assert chosen["neurons_reset"] == m["neurons_reset"]
    assert chosen["entropy"] == m["entropy"]["rejuvenated"] and m["rho_choice"] == "given"
    ratios = [g["effective_reset_ratio"] for g in grid]
    assert ratios == sorted(ratios)  # the same pass: a larger ρ resets a superset
    # The union over 12 samples × 8 targets is several times the per-target share.
    assert m["effective_reset_ratio"] > 2 * m["rho"]
    assert all(0.0 <= v <= 1.0 for v in m["calibration_accuracy"].values())
    assert any(w.startswith("apply: the reset covers") and "above max_reset_share 0.1%" in w for w in m["warnings"])
    quiet = rejuvenate(base, sft, calib_file, tmp_path / "quiet", rho=0.02, max_reset_share=1.0, progress=False)
    assert not any("the reset covers" in w for w in quiet["warnings"])
    assert quiet["rho_grid"] == grid  # the measurements do not depend on the warning threshold


@pytest.mark.slow
def test_grid_measurements_are_those_of_the_written_output(llama_pair, calib_file, tmp_path):
    """The grid is measured on the fused model held in memory; writing ρ = 0.006 and loading it gives the same."""
    from rejuv.data.calibration import load_calibration
    from rejuv.method.arch import adapter_for
    from rejuv.method.attribution import mean_entropy, response_token_stats
    from rejuv.method.passes import token_accuracy
    from rejuv.modeling import load_frozen_model
    from rejuv.recipes.apply import ApplyConfig

    base, sft = llama_pair
    first = rejuvenate(base, sft, calib_file, tmp_path / "a", rho=0.02, progress=False)
    point = next(g for g in first["rho_grid"] if g["rho"] == 0.006)
    written = rejuvenate(base, sft, calib_file, tmp_path / "b", rho=0.006, rho_grid=[0.02], progress=False)
    assert written["neurons_reset"] == point["neurons_reset"]
    model = load_frozen_model(tmp_path / "b", device="cpu", progress=False)
    calib = load_calibration(calib_file, AutoTokenizer.from_pretrained(sft), ApplyConfig.max_samples)
    stats = response_token_stats(model, adapter_for(model.config.to_dict()), calib.samples)
    assert mean_entropy(stats) == pytest.approx(point["entropy"], abs=1e-6)
    assert token_accuracy(stats, calib) == point["calibration_accuracy"]


@pytest.mark.slow
def test_reused_attribution_gives_another_alpha_or_rho_without_a_new_pass(llama_pair, calib_file, tmp_path,
                                                                          monkeypatch):
    import rejuv.method.passes

    base, sft = llama_pair
    rejuvenate(base, sft, calib_file, tmp_path / "first", rho=0.02, progress=False)
    fresh = rejuvenate(base, sft, calib_file, tmp_path / "fresh", alpha=0.7, rho=0.006, progress=False)

    def no_attribution(*args, **kwargs):
        raise AssertionError("the attribution ran again")

    monkeypatch.setattr(rejuv.method.passes, "find_reset_set", no_attribution)
    reused = rejuvenate(base, sft, calib_file, tmp_path / "reused", alpha=0.7, rho=0.006, rho_grid=[0.002, 0.02],
                        reuse_attribution=str(tmp_path / "first"), progress=False)
    assert reused["reset"] == fresh["reset"] and reused["attribution"] == str(tmp_path / "first")
    got, want = weights(tmp_path / "reused"), weights(tmp_path / "fresh")
    assert all(torch.equal(got[n], want[n]) for n in want)  # the same bytes as a full run
    with pytest.raises(RejuvError, match="holds the reset sets of rho 0.002, 0.006, 0.02, 0.06; rho 0.5 needs a new "
                                         "attribution pass"):
        rejuvenate(base, sft, calib_file, tmp_path / "x", rho=0.5, reuse_attribution=str(tmp_path / "first"))
    with pytest.raises(RejuvError, match=r"differs in targets_per_sample \(8 there, 4 here\)"):
        rejuvenate(base, sft, calib_file, tmp_path / "x", targets_per_sample=4,
                   reuse_attribution=str(tmp_path / "first"))
    with pytest.raises(RejuvError, match="differs in base"):
        rejuvenate(sft, sft, calib_file, tmp_path / "x", reuse_attribution=str(tmp_path / "first"))
    assert not (tmp_path / "x").exists()


    # is 0.0004 there, and 0.00085 is more


@pytest.mark.slow
def test_rho_auto_states_its_tolerance_in_the_manifest(llama_pair, calib_file, tmp_path):
    base, sft = llama_pair
    m = rejuvenate(base, sft, calib_file, tmp_path / "auto", rho="auto", max_reset_share=0.2, progress=False)
    assert [g["rho"] for g in m["rho_grid"]] == [0.0003, 0.001, 0.003, 0.01, 0.03]
    cost = m["accuracy_cost_allowed"]
    assert cost["tokens"] > 0 and cost["allowed"] == pytest.approx(cost["fusion_cost"] + cost["tolerance"])
    allowed = [g["rho"] for g in m["rho_grid"] if g["effective_reset_ratio"] <= 0.2 and
               m["calibration_accuracy"]["fused"] - g["calibration_accuracy"] <= cost["allowed"] + 1e-12]
    assert m["rho"] == (max(allowed) if allowed else 0.0) and m["rho_choice"].startswith("the largest rho")
    assert f"{cost['tolerance']:.4f} over {cost['tokens']} tokens" in m["rho_choice"]
    ran = m["ran"]  # what ran, resolved: not `device: null`
    assert (ran["device"], ran["dtype"]) == ("cpu", "float32") and "transformers passes" in ran["engine"]
    assert ran["versions"]["rejuv"] and ran["versions"]["safetensors"]
    fused = fuse(base, sft, tmp_path / "fused", progress=False)["ran"]
    assert (fused["device"], fused["dtype"], fused["engine"]) == (None, None, "rejuv streamed fusion (numpy)")


def test_rho_zero_is_fusion_alone_and_runs_no_attribution(llama_pair, calib_file, tmp_path):
    base, sft = llama_pair
    m = rejuvenate(base, sft, calib_file, tmp_path / "o", rho=0.0, progress=False)
    assert m["fusion_only"] and m["rho_grid"] == [] and m["attribution"] is None and m["neurons_reset"] == 0
    assert not (tmp_path / "o" / "attribution.json").exists() and m["entropy"]["fused"] is not None


@pytest.mark.slow
def test_cli_prints_the_share_per_module_kind_and_layer_and_the_warnings(llama_pair, calib_file, tmp_path):
    base, sft = llama_pair
    result = CliRunner().invoke(main, ["apply", "--base", str(base), "--sft", str(sft), "--calib", str(calib_file),
                                       "--out", str(tmp_path / "o"), "--rho", "0.02", "--max-reset-share", "0.001",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary["reset_ratio_by_kind"]) >= {"q_proj", "down_proj"} and summary["warnings"]
    assert set(summary["reset_ratio_by_layer"]) == {"0", "1"}  # README: "per module kind and layer"
    assert [g["rho"] for g in summary["rho_grid"]] == [0.002, 0.006, 0.02, 0.06]
    assert "warning: apply: the reset covers" in result.stderr


@pytest.mark.slow
def test_every_output_has_a_model_card_with_hub_front_matter(llama_pair, calib_file, tmp_path):
    import yaml

    base, sft = llama_pair
    fuse(base, sft, tmp_path / "fused", alpha=0.7, progress=False)
    rejuvenate(base, sft, calib_file, tmp_path / "rejuv", rho=0.02, progress=False)
    for name, tag in (("fused", "linear"), ("rejuv", "rejuvenation")):
        text = (tmp_path / name / "README.md").read_text()
        _, front, body = text.split("---\n", 2)
        meta = yaml.safe_load(front)
        assert meta["base_model"] == [str(base), str(sft)] and meta["library_name"] == "transformers"
        assert meta["base_model_relation"] == "merge"
        assert tag in meta["tags"] and "rejuv" in meta["tags"]
        assert f"rejuv apply --base {base} --sft {sft}" in body
    card = (tmp_path / "rejuv" / "README.md").read_text()
    assert "| module | neurons reset | share |" in card and "| sft |" in card and "| rejuvenated |" in card
    mergekit = yaml.safe_load((tmp_path / "fused" / "mergekit_config.yml").read_text())
    assert mergekit["merge_method"] == "linear" and mergekit["parameters"] == {"normalize": False}
    assert [m["parameters"]["weight"] for m in mergekit["models"]] == [0.7, pytest.approx(0.3)]
    assert [m["model"] for m in mergekit["models"]] == [str(sft), str(base)]
    assert not (tmp_path / "rejuv" / "mergekit_config.yml").exists()  # a reset has no mergekit equivalent


def _edited(record: dict, edit: str) -> object:
    import copy

    record = copy.deepcopy(record)
    rho = next(iter(record["grid"]))
    plan = record["grid"][rho]
    name = next(n for n, e in plan.items() if e["indices"])
    if edit == "a list":
        return [record]
    if edit == "no grid":
        del record["grid"]
    elif edit == "key abc":
        record["grid"]["abc"] = plan
    elif edit == "index too large":
        plan[name]["indices"][0] = 1_000_000
    elif edit == "index -1":
        plan[name]["indices"][0] = -1
    elif edit == "unknown tensor":
        plan["model.layers.99.mlp.down_proj.weight"] = {"axis": 1, "indices": [0]}
    elif edit == "short target":
        record["targets"][0] = record["targets"][0][:3]
    elif edit == "wrong axis":
        plan[name]["axis"] = 1 - plan[name]["axis"]
    elif edit == "position not in the response":
        record["targets"][0][1] = 0
    return record


@pytest.mark.slow
@pytest.mark.parametrize("edit, message", [
    ("a list", "the top level: expected an object"),
    ("no grid", r"\['grid'\]: missing"),
    ("key abc", r"\['grid'\]\['abc'\]: the key is not a number"),
    ("index too large", r"\['indices'\]\[0\]: 1000000 is outside \[0, \d+\)"),
    ("index -1", r"\['indices'\]\[0\]: -1 is outside \[0, \d+\)"),
    ("unknown tensor", r"'model.layers.99.mlp.down_proj.weight'\]: no tensor of the model"),
    ("short target", r"\['targets'\]\[0\]: expected \[sample, position, token, gap\], got 3 values"),
    ("wrong axis", r"\['axis'\]: \d is not the axis its neurons lie along"),
    ("position not in the response", r"\['targets'\]\[0\]\[1\] \(position\): 0 is not a response position"),
])
def test_an_edited_attribution_record_is_refused_by_its_place_never_used(llama_pair, calib_file, tmp_path, edit,
                                                                         message):
    """`attribution.json` is untrusted: with its fingerprints intact, an edit is named with the file and the place
    in it before any pass runs; an index of -1 once reset the last row of ten tensors without a word."""
    base, sft = llama_pair
    first = tmp_path / "first"
    if not first.exists():
        rejuvenate(base, sft, calib_file, first, rho=0.02, progress=False)
    record = json.loads((first / "attribution.json").read_text())
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(_edited(record, edit)))
    with pytest.raises(RejuvError, match=rf"edited\.json: not a valid attribution record: .*{message}"):
        rejuvenate(base, sft, calib_file, tmp_path / "out", rho=0.02, reuse_attribution=edited, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_rebuild_command_carries_only_options_that_mean_something_for_it():
    """Plan once recommended `rejuv apply … --fusion-only --max-samples 8 …`: without --calib that option means
    nothing. One builder serves apply's model card and plan's recommendation."""
    from rejuv.recipes.apply import ApplyConfig

    fused = ApplyConfig(base="b", sft="my sft", out="o", calib="c.jsonl", fusion_only=True, max_samples=8, seed=3)
    assert fused.command() == "rejuv apply --base b --sft 'my sft' --alpha 0.5 --fusion-only --out OUT"
    reset = ApplyConfig(base="b", sft="s", out="o", calib="c.jsonl", rho="auto")
    assert reset.command(rho=0.003, reuse="plan/candidates/a") == (
        "rejuv apply --base b --sft s --alpha 0.5 --calib c.jsonl --rho 0.003 --targets-per-sample 8 --max-samples 64 "
        "--max-length 2048 --target-token gold --ranking global --chat-template auto --dtype float32 --seed 0 "
        "--reuse-attribution plan/candidates/a --out OUT")  # every option declared to change the output, no other
    assert reset.command(rho=0.0).endswith("--fusion-only --out OUT")  # auto chose no reset


@pytest.mark.slow
def test_no_progress_still_says_each_pass_of_a_long_run(llama_pair, calib_file, tmp_path, monkeypatch):
    """`apply --no-progress` printed nothing in a 24-minute run. Without bars, every pass that lasts (here:
    every pass, REJUV_PROGRESS_EVERY=0) still ends with a line saying what it did."""
    monkeypatch.setenv("REJUV_PROGRESS_EVERY", "0")
    base, sft = llama_pair
    result = CliRunner().invoke(main, ["apply", "--base", str(base), "--sft", str(sft), "--calib", str(calib_file),
                                       "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 0, result.output
    ends = []  # the lines that say a pass is done (done = total), each pass's once
    for line in result.stderr.splitlines():
        said = re.match(r"(?P<name>[^:]+): (?P<done>[^/]+)/(?P<total>.+?) \S+ \(\d+%\)", line)
        if said and said["done"] == said["total"]:
            ends.append(said["name"])
    assert {"entropy (base)", "entropy (sft)", "attribution", "entropy (fused)", "writing"} <= set(ends), ends
    assert len(ends) == len(set(ends))


@pytest.mark.slow
def test_a_random_reset_control_keeps_the_attributions_count_per_module(llama_pair, calib_file, tmp_path):
    """`--random-reset`: as many neurons per module as the attribution resets, drawn at random with the seed; the
    manifest measures the output it describes and says what it is."""
    base, sft = llama_pair
    common = dict(base=str(base), sft=str(sft), calib=str(calib_file), rho=0.05, progress=False)
    attributed = run_apply(ApplyConfig(out=str(tmp_path / "a"), **common))
    control = run_apply(ApplyConfig(out=str(tmp_path / "r"), random_reset=True, reuse_attribution=str(tmp_path / "a"),
                                    **common))
    assert control["reset_by_module"] == attributed["reset_by_module"] and control["reset"] != attributed["reset"]
    assert control["reset_choice"].startswith("random") and attributed["reset_choice"] == "attribution"
    assert control["entropy"]["rejuvenated"] != attributed["entropy"]["rejuvenated"]
    assert_fusion_with_resets(tmp_path / "r", base, sft, 0.5, control["reset"])
    assert "--random-reset" in (tmp_path / "r" / "README.md").read_text()
    with pytest.raises(RejuvError, match="random_reset: draws a reset set, and --fusion-only resets nothing"):
        ApplyConfig(out=str(tmp_path / "x"), fusion_only=True, random_reset=True, base="b", sft="s")
