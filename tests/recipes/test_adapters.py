"""PEFT LoRA adapters wherever an SFT checkpoint or an RL start is taken: `apply` fuses θ_base + α·s·B·A without a
merged copy and can write a rejuvenated adapter; `diagnose`, `eval`, `rl` and `plan` take adapters. PEFT's own
merge (`merge_and_unload`) is the reference: rejuv's float32 arithmetic gives its bytes exactly on these float32
models (the tests allow 1e-6 of the weights' scale, for BLAS kernels that sum in another order)."""

import json

import pytest
import torch
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.io.adapter import LoraAdapter
from rejuv.recipes.apply import ApplyConfig, run_apply

from tiny import ARCHS, FAMILIES, build_model, make_lora, peft_merged, save, weights, write_calibration

pytestmark = pytest.mark.slow
TOLERANCE = 1e-6


def _targets(arch: str) -> list[str]:
    # PEFT puts a LoRA on stacked experts as `target_parameters`, which rejuv refuses: attention only there
    return ["q_proj", "k_proj", "v_proj", "o_proj"] if arch in ("mixtral", "qwen3_moe") else None


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Per family: a base, an adapter over it (naming it), PEFT's merge of the two, calibration rows."""
    root = tmp_path_factory.mktemp("adapters")
    write_calibration(root / "calib.jsonl", n=8)
    found = {}
    for arch in ARCHS + FAMILIES:
        model, tok = build_model(arch, seed=0)
        base = save(model, tok, root / arch / "base")
        options = {"target_modules": _targets(arch)} if _targets(arch) else {}
        adapter = make_lora(model, root / arch / "adapter", tok=tok, base_name=str(base), **options)
        merged = save(peft_merged(model, adapter), tok, root / arch / "merged")
        found[arch] = {"base": base, "adapter": adapter, "merged": merged, "model": model, "tok": tok}
    return root, found


def _close(got: dict, expected: dict) -> None:
    for name, value in expected.items():
        scale = float(value.abs().max()) or 1.0
        assert float((got[name].float() - value.float()).abs().max()) <= TOLERANCE * scale, name


@pytest.mark.parametrize("arch", ARCHS + FAMILIES)
def test_a_fused_adapter_at_alpha_1_is_peft_merge_and_unload(worlds, tmp_path, arch):
    root, found = worlds
    w = found[arch]
    run_apply(ApplyConfig(base=str(w["base"]), sft=str(w["adapter"]), alpha=1.0, fusion_only=True,
                          out=str(tmp_path / "f"), progress=False))
    _close(weights(tmp_path / "f"), weights(w["merged"]))
    # at α = 0.5: θ_base + ½·s·B·A, the tensors the adapter leaves alone exactly the base's
    run_apply(ApplyConfig(base=str(w["base"]), sft=str(w["adapter"]), alpha=0.5, fusion_only=True,
                          out=str(tmp_path / "half"), progress=False))
    half, base, merged = weights(tmp_path / "half"), weights(w["base"]), weights(w["merged"])
    updated = set(LoraAdapter(w["adapter"]).pairs)
    for name, value in half.items():
        if name in updated:
            _close({name: value}, {name: base[name] + 0.5 * (merged[name] - base[name])})
        else:
            assert torch.equal(value, base[name]), name
    config = json.loads((tmp_path / "half" / "config.json").read_text())
    assert config["model_type"] == json.loads((w["base"] / "config.json").read_text())["model_type"]
    assert not (tmp_path / "half" / "adapter_config.json").exists()  # a full model folder, not an adapter


@pytest.mark.parametrize("arch", ARCHS + FAMILIES)
def test_the_adapter_output_merges_to_the_full_output_and_resets_exactly_the_manifests_rows(worlds, tmp_path, arch):
    root, found = worlds
    w = found[arch]
    common = dict(base=str(w["base"]), sft=str(w["adapter"]), calib=str(root / "calib.jsonl"), alpha=0.7, rho=0.05,
                  progress=False)
    full = run_apply(ApplyConfig(out=str(tmp_path / "full"), **common))
    run_apply(ApplyConfig(out=str(tmp_path / "ad"), save_as="adapter",
                          reuse_attribution=str(tmp_path / "full"), **common))
    assert full["neurons_reset"] > 0 and full["sft_is_adapter"] and full["saved_as"] == "model"
    manifest = json.loads((tmp_path / "ad" / "rejuvenation.json").read_text())
    assert manifest["reset"] == full["reset"] and manifest["saved_as"] == "adapter"
    # merged over the same base by PEFT, the adapter output is the full output
    merged = save(peft_merged(w["model"], tmp_path / "ad"), w["tok"], tmp_path / "merged")
    _close(weights(merged), weights(tmp_path / "full"))
    # it touches exactly the manifest's rows of B (readers) and columns of A (writers); B is scaled by α
    given, written = LoraAdapter(w["adapter"]), LoraAdapter(tmp_path / "ad")
    touched = 0
    for name, pair in given.pairs.items():
        a, b = given.weights.read(pair.a), given.weights.read(pair.b)
        a2, b2 = written.weights.read(pair.a), written.weights.read(pair.b)
        expected_a, expected_b = a.clone(), (b.float() * 0.7).to(b.dtype)
        reset = full["reset"].get(name)
        if reset:
            touched += 1
            if reset["axis"] == 0:
                expected_b[reset["indices"]] = 0
            else:
                expected_a[:, reset["indices"]] = 0
        assert torch.equal(a2, expected_a) and torch.equal(b2, expected_b), name
    assert touched > 0
    config = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(w["base"]) and config["r"] == given.config["r"]
    card = (tmp_path / "ad" / "README.md").read_text()
    assert "base_model_relation: adapter" in card and "library_name: peft" in card
    assert "--save-as adapter" in card


def test_an_adapter_over_another_base_and_a_full_model_as_adapter_output_are_refused(worlds, tmp_path):
    root, found = worlds
    with pytest.raises(RejuvError, match=r"adapter: updates model.layers.0.mlp.gate_up_proj.weight, which base .*"
                                         r"llama/base does not hold \(another base\?\)"):
        run_apply(ApplyConfig(base=str(found["llama"]["base"]), sft=str(found["phi3"]["adapter"]), fusion_only=True,
                              out=str(tmp_path / "x"), progress=False))
    with pytest.raises(RejuvError, match="--save-as adapter writes a rejuvenated adapter, and --sft is a full model"):
        run_apply(ApplyConfig(base=str(found["llama"]["base"]), sft=str(found["llama"]["merged"]), fusion_only=True,
                              save_as="adapter", out=str(tmp_path / "y"), progress=False))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_diagnose_and_eval_read_an_adapter_as_its_merged_model(worlds, tmp_path):
    """The drift, entropies and samples of an adapter equal those of PEFT's merged copy; eval finds the base the
    adapter names."""
    root, found = worlds
    w = found["qwen3"]
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps({"problem": f"compute {a}+1.", "answer": str(a + 1)})
                                                  + "\n" for a in range(3)))
    reports = {}
    for what in ("adapter", "merged"):
        result = CliRunner().invoke(main, ["diagnose", str(w[what]), "--base", str(w["base"]), "--calib",
                                           str(root / "calib.jsonl"), "--eval", str(tmp_path / "bench.jsonl"),
                                           "--eval-samples", "2", "--k", "2", "--eval-max-new-tokens", "4",
                                           "--out", str(tmp_path / f"d-{what}"), "--no-progress"])
        assert result.exit_code == 0, result.output
        reports[what] = json.loads((tmp_path / f"d-{what}" / "report.json").read_text())["checkpoints"][0]
    adapter, merged = reports["adapter"], reports["merged"]
    assert adapter["params"]["model"]["l2"] == pytest.approx(merged["params"]["model"]["l2"], rel=1e-6)
    assert adapter["outputs"]["mean_entropy"] == pytest.approx(merged["outputs"]["mean_entropy"], abs=1e-6)
    assert adapter["outputs"]["nll"] == pytest.approx(merged["outputs"]["nll"], abs=1e-6)
    assert adapter["sampling"] == merged["sampling"]
    for what in ("adapter", "merged"):  # no --base: the adapter's own base_model_name_or_path
        result = CliRunner().invoke(main, ["eval", str(w[what]), "--data", str(tmp_path / "bench.jsonl"), "-k", "2",
                                           "--max-new-tokens", "4", "--out", str(tmp_path / f"e-{what}"),
                                           "--no-progress"])
        assert result.exit_code == 0, result.output
    samples = [(tmp_path / f"e-{what}" / "samples.jsonl").read_text() for what in ("adapter", "merged")]
    completions = [[json.loads(x)["completion"] for x in s.splitlines()] for s in samples]
    assert completions[0] == completions[1]


def test_the_drift_of_a_rank_r_update_from_its_pair(worlds):
    """‖s·B·A‖_F² = s²·tr((BᵀB)(AAᵀ)): r×r products, no out×in matrix (what docs/method.md says)."""
    root, found = worlds
    w = found["llama"]
    adapter = LoraAdapter(w["adapter"])
    merged, base = weights(w["merged"]), weights(w["base"])
    for name, pair in adapter.pairs.items():
        a, b = adapter.weights.read(pair.a).double(), adapter.weights.read(pair.b).double()
        cheap = pair.scaling * float(torch.trace((b.T @ b) @ (a @ a.T))) ** 0.5
        assert cheap == pytest.approx(float((merged[name].double() - base[name].double()).norm()), rel=1e-5)


@pytest.mark.parametrize("continue_adapter", [False, True])
def test_rl_starts_from_an_adapter_or_trains_it(worlds, tmp_path, continue_adapter):
    root, found = worlds
    w = found["llama"]
    (tmp_path / "rl.jsonl").write_text("".join(json.dumps({"prompt": f"compute {a}+1.", "answer": "7"}) + "\n"
                                               for a in range(8)))
    args = ["rl", "--model", str(w["adapter"]), "--data", str(tmp_path / "rl.jsonl"), "--reward", "tiny:contains_seven",
            "--max-steps", "2", "--num-generations", "4", "--per-device-batch-size", "8", "--max-completion-length",
            "6", "--learning-rate", "1e-2", "--screen-prompts", "0", "--out", str(tmp_path / "rl"), "--no-progress"]
    result = CliRunner().invoke(main, args + (["--continue-adapter"] if continue_adapter else []))
    assert result.exit_code == 0, result.output
    out = tmp_path / "rl"
    if continue_adapter:  # the same adapter, trained: it loads with PEFT over the base it names
        trained = LoraAdapter(out)
        assert trained.base_ref == str(w["base"]) and set(trained.pairs) == set(LoraAdapter(w["adapter"]).pairs)
        assert not (out / "model.safetensors").exists()
        peft_merged(w["model"], out)
    else:  # a full model, trained from the merged start
        assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()


def test_plan_takes_adapters_as_its_checkpoints(worlds, tmp_path):
    root, found = worlds
    w = found["llama"]
    later = make_lora(w["model"], tmp_path / "later", seed=2, scale=0.5, tok=w["tok"], base_name=str(w["base"]))
    (tmp_path / "rl.jsonl").write_text("".join(json.dumps({"prompt": f"compute {a}+1.", "answer": "7"}) + "\n"
                                               for a in range(16)))
    result = CliRunner().invoke(main, [
        "plan", str(w["adapter"]), str(later), "--base", str(w["base"]), "--calib", str(root / "calib.jsonl"),
        "--probe-data", str(tmp_path / "rl.jsonl"), "--probe-reward", "tiny:contains_seven", "--budget-steps", "8",
        "--alphas", "0.5", "--rhos", "0", "--probe-top", "1", "--probe-num-generations", "4",
        "--probe-per-device-batch-size", "8", "--probe-max-completion-length", "6", "--probe-learning-rate", "1e-2",
        "--eval-samples", "2", "--k", "2", "--eval-max-new-tokens", "4", "--eval-max-problems", "4",
        "--forecast-prompts", "4", "--max-samples", "4", "--out", str(tmp_path / "plan"), "--no-progress"])
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert [c["path"] for c in plan["checkpoints"]] == [str(w["adapter"]), str(later)]
