"""`rejuv apply`, `diagnose` and `plan` on the families with more roles than Llama's: Gemma 2 and 3 (post-norms,
(1 + weight) norms, soft-capping, tied embeddings), Phi-3 (fused projections), OLMo 2 (post-norms) and Mixtral and
Qwen3-MoE (experts and a router), each a tiny random model built from its transformers config."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rejuv import diagnose, fuse, rejuvenate
from rejuv.errors import RejuvError
from rejuv.planner.plan import PlanConfig, PlanEvaluation, ProbeSettings, run_plan

from tiny import FAMILIES, assert_fusion_with_resets, build_model, perturbed, planning_world, save, tiny_config, weights

MOE = ("mixtral", "qwen3_moe")
ROUTER = {"mixtral": ".block_sparse_moe.gate.weight", "qwen3_moe": ".mlp.gate.weight"}


@pytest.fixture(scope="session", params=FAMILIES)
def family(request, tmp_path_factory):
    """(arch, base folder, SFT folder); Gemma's tie their embeddings, as the released checkpoints do."""
    arch = request.param
    root = tmp_path_factory.mktemp(arch)
    base, tok = build_model(arch, seed=0, tied=arch.startswith("gemma"))
    sft = perturbed(base, seed=1)
    return arch, save(base, tok, root / "base"), save(sft, tok, root / "sft")


ALPHA = 0.5


@pytest.fixture(scope="session")
def rejuvenated(family, calib_file, tmp_path_factory):
    """The family's pair fused at α 0.5 and reset at ρ 0.01 ranked per module (so every kind has neurons reset,
    inside the fused and expert tensors too)."""
    arch, base, sft = family
    out = tmp_path_factory.mktemp(f"{arch}-out") / "out"
    manifest = rejuvenate(base, sft, calib_file, out, alpha=ALPHA, rho=0.01, ranking="per-module", progress=False)
    return arch, base, sft, out, manifest


def test_unsupported_families_are_refused_by_name_before_any_work(tmp_path, calib_file):
    config = tiny_config("llama", 64).to_dict()
    for model_type, missing in (("deepseek_v3", "multi-head latent attention"), ("qwen2_moe", "shared experts")):
        for side in ("base", "sft"):
            (tmp_path / side).mkdir(exist_ok=True)
            (tmp_path / side / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
            save_file({"model.embed_tokens.weight": torch.zeros(64, 32)}, tmp_path / side / "model.safetensors")
        with pytest.raises(RejuvError, match=f"unsupported architecture '{model_type}': rejuv lacks .*{missing}"):
            rejuvenate(tmp_path / "base", tmp_path / "sft", calib_file, tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_reset_touches_exactly_the_manifests_rows_and_the_rest_is_the_fusion(rejuvenated):
    arch, base, sft, out, manifest = rejuvenated
    assert manifest["dla_reconstruction_error"]["max_abs"] < 1e-4
    assert_fusion_with_resets(out, base, sft, ALPHA, manifest["reset"])
    got = weights(out)
    reset, modules = manifest["reset"], manifest["reset_by_module"]
    assert set(manifest["reset_by_kind"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"}
    assert all(v["reset"] > 0 for v in manifest["reset_by_kind"].values())  # per-module ranking reaches every kind
    if arch == "phi3":  # q, k and v rows inside qkv_proj; gate and up rows inside gate_up_proj
        config = json.loads((sft / "config.json").read_text())
        q = config["num_attention_heads"] * (config["hidden_size"] // config["num_attention_heads"])
        kv = config["num_key_value_heads"] * (config["hidden_size"] // config["num_attention_heads"])
        width = config["intermediate_size"]
        for layer in range(config["num_hidden_layers"]):
            rows = reset[f"model.layers.{layer}.self_attn.qkv_proj.weight"]["indices"]
            spans = {"q_proj": (0, q), "k_proj": (q, q + kv), "v_proj": (q + kv, q + 2 * kv)}
            rows_mlp = reset[f"model.layers.{layer}.mlp.gate_up_proj.weight"]["indices"]
            spans_mlp = {"gate_proj": (0, width), "up_proj": (width, 2 * width)}
            for kind, (lo, hi) in spans.items():
                assert modules[f"{layer}.{kind}"]["reset"] == sum(lo <= i < hi for i in rows) > 0
            for kind, (lo, hi) in spans_mlp.items():
                assert modules[f"{layer}.{kind}"]["reset"] == sum(lo <= i < hi for i in rows_mlp) > 0
            assert max(rows) < q + 2 * kv and max(rows_mlp) < 2 * width
    if arch in MOE:  # each expert's neurons by name; the router fused, never reset
        assert any(".experts." in name for name in reset)
        assert not any(name.endswith(ROUTER[arch]) for name in reset)
        assert any(name.endswith(ROUTER[arch]) for name in got)
        labelled = [label for label in modules if ".expert" in label]
        assert len(labelled) == 3 * 4 * (2 if arch == "mixtral" else 1)  # kinds × experts × sparse layers
        assert sum(modules[label]["reset"] for label in labelled) > 0
    if arch.startswith("gemma"):  # tied: the embedding stored once, fused once
        assert "lm_head.weight" not in got


@pytest.mark.slow
def test_the_manifests_measurements_are_those_of_the_written_output(rejuvenated, calib_file):
    """Entropy and accuracy were measured on the model held in memory (an expert's values in a slice of the
    stacked tensor transformers loads); the written output, loaded back, gives the same numbers."""
    from rejuv.data.calibration import load_calibration
    from rejuv.method.arch import adapter_for
    from rejuv.method.attribution import mean_entropy, response_token_stats
    from rejuv.method.passes import token_accuracy
    from rejuv.modeling import load_frozen_model

    arch, base, sft, out, manifest = rejuvenated
    model = load_frozen_model(out, device="cpu", progress=False)
    calib = load_calibration(calib_file, AutoTokenizer.from_pretrained(sft))
    stats = response_token_stats(model, adapter_for(model.config.to_dict()), calib.samples)
    assert mean_entropy(stats) == pytest.approx(manifest["entropy"]["rejuvenated"], abs=1e-6)
    chosen = next(g for g in manifest["rho_grid"] if g["rho"] == manifest["rho"])
    assert token_accuracy(stats, calib) == chosen["calibration_accuracy"]


@pytest.mark.slow
def test_the_output_loads_in_transformers_and_generates(rejuvenated):
    arch, base, sft, out, manifest = rejuvenated
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == arch
    assert json.loads((out / "config.json").read_text()) == json.loads((sft / "config.json").read_text())
    if arch == "gemma2":
        assert model.config.final_logit_softcapping == 3.0
    ids = tok("compute 3+4.", return_tensors="pt")["input_ids"]
    generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 5 or generated[0, -1] == tok.eos_token_id


@pytest.mark.slow
def test_alpha_one_and_rho_zero_give_the_sft_model_bit_for_bit(family, calib_file, tmp_path):
    arch, base, sft = family
    manifest = rejuvenate(base, sft, calib_file, tmp_path / "out", alpha=1.0, rho=0.0, progress=False)
    got, want = weights(tmp_path / "out"), weights(sft)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert manifest["neurons_reset"] == 0


def stack_experts(folder, out):
    """Rewrite a Mixtral folder with each layer's experts in two stacked tensors (the layout transformers ≥ 5
    holds in memory, which some tools save)."""
    import shutil

    shutil.copytree(folder, out)
    tensors = load_file(out / "model.safetensors")
    config = json.loads((out / "config.json").read_text())
    stacked = {}
    for name, value in tensors.items():
        if ".experts." not in name:
            stacked[name.replace(".block_sparse_moe.", ".mlp.")] = value
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}.block_sparse_moe.experts"
        experts = range(config["num_local_experts"])
        stacked[f"model.layers.{layer}.mlp.experts.gate_up_proj"] = torch.stack(
            [torch.cat([tensors[f"{prefix}.{e}.w1.weight"], tensors[f"{prefix}.{e}.w3.weight"]]) for e in experts])
        stacked[f"model.layers.{layer}.mlp.experts.down_proj"] = torch.stack(
            [tensors[f"{prefix}.{e}.w2.weight"] for e in experts])
    save_file(stacked, out / "model.safetensors", metadata={"format": "pt"})
    return out


@pytest.mark.slow
def test_stacked_experts_fuse_and_load_but_a_reset_is_refused_by_name(calib_file, tmp_path):
    base, tok = build_model("mixtral", seed=0)
    sft = perturbed(base, seed=1)
    base_dir = stack_experts(save(base, tok, tmp_path / "base-experts"), tmp_path / "base")
    sft_dir = stack_experts(save(sft, tok, tmp_path / "sft-experts"), tmp_path / "sft")
    fuse(base_dir, sft_dir, tmp_path / "fused", alpha=0.5, progress=False)
    fused = AutoModelForCausalLM.from_pretrained(tmp_path / "fused").eval()
    state = fused.state_dict()
    b, s = load_file(base_dir / "model.safetensors"), load_file(sft_dir / "model.safetensors")
    for name in ("model.layers.1.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.down_proj"):
        assert torch.equal(state[name], (0.5 * s[name] + 0.5 * b[name]).to(s[name].dtype))
    with pytest.raises(RejuvError, match=r"per-expert tensor .*experts\.0\.w1\.weight.*stacked.*--fusion-only"):
        rejuvenate(base_dir, sft_dir, calib_file, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_diagnose_names_each_familys_own_tensors(family, calib_file, tmp_path):
    arch, base, sft = family
    """Drift per kind, and (with --reference base) the update's rank per kind, under the family's own names."""
    report = diagnose(base, [sft], calib_file, tmp_path / "rep", reference=base, progress=False,
                      evaluation={"samples": 2, "max_problems": 4, "max_new_tokens": 4})
    (entry,) = report["checkpoints"]
    expected = {"phi3": {"qkv_proj", "gate_up_proj"}, "mixtral": {"expert_gate_proj", "expert_down_proj"},
                "qwen3_moe": {"expert_up_proj", "gate_proj"}}.get(arch, {"q_proj", "down_proj"})
    assert expected | ({"router"} if arch in MOE else set()) <= set(entry["params"]["by_kind"])
    (update,) = report["update"]["checkpoints"]
    assert expected <= set(update["rank"]) and all(update["rank"][k]["unchanged"] == 0 for k in expected)
    assert "router" not in update["rank"]
    assert entry["outputs"]["entropy_gap_to_base"] != 0


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mixtral", "phi3", "gemma2"])
def test_plan_runs_on_the_family_and_recommends_a_probed_candidate(arch, tmp_path):
    planning_world(tmp_path, arch, tied=arch.startswith("gemma"))
    plan = run_plan(PlanConfig(
        base=str(tmp_path / "base"), checkpoints=[str(tmp_path / "early"), str(tmp_path / "late")],
        calib=str(tmp_path / "calib.jsonl"),
        probe_data=str(tmp_path / "rl.jsonl"), out=str(tmp_path / "plan"), budget_steps=4, alphas=[0.5],
        rhos=[0.0, 0.05], probe_top=1, k=2, max_samples=8, progress=False,
        probe=ProbeSettings(rewards=["tiny:contains_seven"], learning_rate=2e-2, num_generations=4,
                            per_device_batch_size=8, max_completion_length=4),
        evaluation=PlanEvaluation(samples=2, max_problems=4, max_new_tokens=4)))
    cands = plan["search"]["candidates"]
    assert [(c["alpha"], c["rho"]) for c in cands] == [(0.5, 0.0), (0.5, 0.05)]
    assert any(c["probe"] is not None for c in cands) and plan["recommendation"]
