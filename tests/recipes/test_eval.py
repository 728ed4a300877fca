"""`rejuv eval` on a tiny model: numbers with their counts, engines, resume, damaged kept results, records."""

import json
import sys
import types

import pytest
import torch
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.evaluation.engines import choose_engine
from rejuv.recipes.eval import EvalConfig, run_eval

from tiny import build_model, save


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model, tok = build_model("qwen3", seed=0)
    save(model, tok, root / "model")
    (root / "arith.jsonl").write_text("".join(json.dumps({"problem": f"compute {i}+1.", "answer": str(i + 1)}) + "\n"
                                              for i in range(3)))
    return root


@pytest.mark.slow
def test_eval_writes_every_number_with_its_counts(bench, tmp_path):
    cfg = dict(checkpoints=[str(bench / "model")], data=[str(bench / "arith.jsonl")], samples=4, max_new_tokens=6,
               engine="transformers", chat_template="never", progress=False)
    report = run_eval(EvalConfig(out=str(tmp_path / "a"), **cfg))
    (result,) = report["results"]
    assert result["problems"] == 3 and result["samples_per_problem"] == 4
    assert set(result["pass@k"]) == {"1", "4"} and 0 <= result["pass@1"] <= result["pass@k"]["4"] <= 1
    samples = [json.loads(x) for x in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and {s["sample"] for s in samples} == {0, 1, 2, 3}
    assert json.loads((tmp_path / "a" / "eval.json").read_text()) == report
    lm_eval = tmp_path / "a" / "lm_eval" / str(bench / "model").strip("/").replace("/", "__")
    harness = json.loads((lm_eval / "results_rejuv.json").read_text())  # lm-evaluation-harness's layout
    assert harness["results"]["arith"]["pass@1,none"] == result["pass@1"]
    assert harness["n-samples"]["arith"] == {"original": 3, "effective": 3}
    docs = [json.loads(x) for x in (lm_eval / "samples_arith_rejuv.jsonl").read_text().splitlines()]
    assert [d["doc_id"] for d in docs] == [0, 1, 2] and all(len(d["resps"][0]) == 4 for d in docs)
    again = run_eval(EvalConfig(out=str(tmp_path / "b"), **cfg))
    assert (tmp_path / "a" / "samples.jsonl").read_text() == (tmp_path / "b" / "samples.jsonl").read_text()
    assert again["results"] == report["results"]


def test_eval_bad_input(bench, tmp_path):
    base = dict(checkpoints=[str(bench / "model")], data=[str(bench / "arith.jsonl")], out=str(tmp_path / "o"))
    with pytest.raises(RejuvError, match="pass_k: pass@k needs k ≤ samples per problem \\(4\\)"):
        run_eval(EvalConfig(samples=4, pass_k=[8], **base))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RejuvError, match="not a model folder"):
        run_eval(EvalConfig(**{**base, "checkpoints": [str(tmp_path / "empty")]}))
    (tmp_path / "q.jsonl").write_text(json.dumps({"problem": "x"}) + "\n")
    with pytest.raises(RejuvError, match="missing the 'answer' column"):
        run_eval(EvalConfig(**{**base, "data": [str(tmp_path / "q.jsonl")]}))
    assert not (tmp_path / "o").exists()


def test_vllm_engine_gives_the_same_format(bench, tmp_path, monkeypatch):
    """vLLM is not installed on CPU machines; a stand-in with its API checks our side of the call."""
    calls = {}

    class SamplingParams:
        def __init__(self, **kwargs):
            calls["params"] = kwargs

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def generate(self, prompts, params):
            calls["prompts"] = prompts
            out = types.SimpleNamespace(text="\\boxed{1}")
            return [types.SimpleNamespace(outputs=[out] * params_n()) for _ in prompts]

    def params_n():
        return calls["params"]["n"]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    assert choose_engine("auto") == "transformers"  # vLLM present but no GPU
    report = run_eval(EvalConfig(checkpoints=[str(bench / "model")], data=[str(bench / "arith.jsonl")],
                                 out=str(tmp_path / "v"), samples=2, engine="vllm", chat_template="never",
                                 temperature=0.6, max_new_tokens=5, progress=False))
    assert calls["params"] == {"n": 2, "temperature": 0.6, "top_p": 1.0, "max_tokens": 5, "seed": 0}
    assert all("prompt_token_ids" in p for p in calls["prompts"])
    (result,) = report["results"]
    assert result["correct_per_problem"] == [2, 0, 0]  # only problem 0 has answer 1
    assert report["engine"] == "vllm"


def test_vllm_engine_serves_an_adapter_with_its_lora_support(bench, tmp_path, monkeypatch):
    """An adapter goes to vLLM as its base with `enable_lora`, and the adapter on every request (a stand-in
    with vLLM's API checks our side of the call)."""
    from tiny import build_model, make_lora

    calls = {}

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"] = kwargs

        def generate(self, prompts, params, lora_request=None):
            calls["lora"] = lora_request
            out = types.SimpleNamespace(text="1")
            return [types.SimpleNamespace(outputs=[out]) for _ in prompts]

    class LoRARequest:
        def __init__(self, name, number, path):
            self.name, self.number, self.path = name, number, path

    request = types.SimpleNamespace(LoRARequest=LoRARequest)
    fake = types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: types.SimpleNamespace(**kw),
                                 lora=types.SimpleNamespace(request=request))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.lora", fake.lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    model, tok = build_model("qwen3", seed=0)
    adapter = make_lora(model, tmp_path / "adapter", rank=12, tok=tok, base_name=str(bench / "model"))
    run_eval(EvalConfig(checkpoints=[str(adapter)], data=[str(bench / "arith.jsonl")], out=str(tmp_path / "v"),
                        samples=1, engine="vllm", chat_template="never", max_new_tokens=2, progress=False))
    assert calls["llm"]["model"] == str(bench / "model") and calls["llm"]["enable_lora"]
    assert calls["llm"]["max_lora_rank"] == 16  # the rank rounded up to one vLLM takes
    assert calls["lora"].path == str(adapter)


def test_eval_cli_prints_a_table(bench, tmp_path):
    result = CliRunner().invoke(main, ["eval", str(bench / "model"), "--data", str(bench / "arith.jsonl"),
                                       "--out", str(tmp_path / "c"), "-k", "2", "--max-new-tokens", "4",
                                       "--engine", "transformers", "--pass-k", "1,2"])
    assert result.exit_code == 0, result.output
    assert "pass@1" in result.stdout and "pass@2" in result.stdout and "arith" in result.stdout


@pytest.mark.slow
def test_eval_keeps_each_result_and_resumes_after_an_interruption(bench, tmp_path, monkeypatch):
    from rejuv.evaluation.engines import TransformersEngine
    from rejuv.evaluation.kept import partial_dir

    from tiny import perturbed

    model, tok = build_model("qwen3", seed=0)
    save(perturbed(model, seed=5), tok, tmp_path / "other")
    cfg = dict(checkpoints=[str(bench / "model"), str(tmp_path / "other")], data=[str(bench / "arith.jsonl")],
               samples=2, max_new_tokens=4, engine="transformers", progress=False)
    fresh = run_eval(EvalConfig(out=str(tmp_path / "fresh"), **cfg))
    loaded, stop = [], {"at": str(tmp_path / "other")}
    original = TransformersEngine.__init__

    def load(self, path, config):
        loaded.append(path)
        if path == stop["at"]:
            raise KeyboardInterrupt  # as if the job were stopped while loading the second checkpoint
        original(self, path, config)

    monkeypatch.setattr(TransformersEngine, "__init__", load)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_eval(EvalConfig(out=str(out), **cfg))
    assert not out.exists() and len(list(partial_dir(out).glob("*.json"))) == 1  # the first result is kept
    loaded.clear()
    stop["at"] = None
    resumed = run_eval(EvalConfig(out=str(out), **cfg))
    assert loaded == [str(tmp_path / "other")]  # the first checkpoint was not sampled again
    assert resumed["results"] == fresh["results"]
    assert (out / "samples.jsonl").read_text() == (tmp_path / "fresh" / "samples.jsonl").read_text()
    assert not partial_dir(out).exists()


def test_eval_runs_float32_on_the_cpu_when_asked_for_auto(bench, tmp_path):
    import torch

    from rejuv.evaluation.engines import Sampling, eval_dtype

    sampling = dict(samples=1, temperature=0.6, top_p=1.0, max_new_tokens=4, batch_size=1, seed=0, device="cpu")
    assert eval_dtype(Sampling(**sampling, dtype="auto")) == torch.float32  # auto on the CPU
    assert eval_dtype(Sampling(**sampling, dtype="bfloat16")) == torch.bfloat16
    with pytest.raises(RejuvError, match="dtype: 'half' is not one of auto, float32, bfloat16"):
        run_eval(EvalConfig(checkpoints=[str(bench / "model")], data=[str(bench / "arith.jsonl")],
                            out=str(tmp_path / "o"), dtype="half"))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["cut", "empty object", "binary", "a folder", "Infinity in a sample",
                                    "NaN in a score", "a score its samples do not give"])
def test_a_damaged_kept_result_is_named_set_aside_and_evaluated_again(bench, tmp_path, monkeypatch, damage,
                                                                     rejuv_warnings):
    """Kept results are untrusted: damaged ones once made every re-run fail with a traceback naming no file."""
    from rejuv.evaluation.engines import TransformersEngine
    from rejuv.evaluation.kept import partial_dir

    from tiny import perturbed

    model, tok = build_model("qwen3", seed=0)
    save(perturbed(model, seed=5), tok, tmp_path / "other")
    cfg = dict(checkpoints=[str(bench / "model"), str(tmp_path / "other")], data=[str(bench / "arith.jsonl")],
               samples=2, max_new_tokens=4, engine="transformers", progress=False)
    fresh = run_eval(EvalConfig(out=str(tmp_path / "fresh"), **cfg))
    original = TransformersEngine.__init__

    def stop_at_the_second(self, path, config):
        if path == str(tmp_path / "other"):
            raise KeyboardInterrupt
        original(self, path, config)

    out = tmp_path / "out"
    monkeypatch.setattr(TransformersEngine, "__init__", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_eval(EvalConfig(out=str(out), **cfg))
    monkeypatch.setattr(TransformersEngine, "__init__", original)
    (unit,) = partial_dir(out).glob("*.json")
    if damage == "cut":
        unit.write_text(unit.read_text()[:100])
    elif damage == "empty object":
        unit.write_text("{}")
    elif damage == "binary":
        unit.write_bytes(b"\x00\xff\xfe")
    elif damage == "Infinity in a sample":
        unit.write_text(unit.read_text().replace('"confidence": null', '"confidence": Infinity', 1))
    elif damage == "NaN in a score":
        kept = json.loads(unit.read_text())
        unit.write_text(json.dumps({**kept, "result": {**kept["result"], "pass@1": float("nan")}}))
    elif damage == "a score its samples do not give":
        kept = json.loads(unit.read_text())
        unit.write_text(json.dumps({**kept, "result": {**kept["result"], "pass@1": 0.75}}))
    else:
        unit.unlink()
        unit.mkdir()
    again = run_eval(EvalConfig(out=str(out), **cfg))
    assert again["results"] == fresh["results"] and not partial_dir(out).exists()
    assert (out / "samples.jsonl").read_text() == (tmp_path / "fresh" / "samples.jsonl").read_text()
    assert any(unit.name in w and "set aside" in w for w in rejuv_warnings), rejuv_warnings


def test_a_file_where_the_kept_results_folder_belongs_is_named(bench, tmp_path):
    from rejuv.evaluation.kept import partial_dir

    out = tmp_path / "out"
    partial_dir(out).write_text("not a folder")
    with pytest.raises(RejuvError, match=r"\.out\.rejuv-partial: expected the folder where eval keeps finished "
                                         "results, found a file"):
        run_eval(EvalConfig(checkpoints=[str(bench / "model")], data=[str(bench / "arith.jsonl")], out=str(out),
                            progress=False))
    assert partial_dir(out).read_text() == "not a folder" and not out.exists()


@pytest.mark.slow
def test_records_say_what_ran_and_logs_carry_no_loading_bars(bench, tmp_path):
    """eval.json recorded `dtype: auto` and `device: null` where float32 on the CPU ran; off a terminal,
    transformers' `Loading weights: 100%|…|` bars filled the logs."""
    result = CliRunner().invoke(main, ["eval", str(bench / "model"), "--data", str(bench / "arith.jsonl"), "--out",
                                       str(tmp_path / "e"), "-k", "2", "--max-new-tokens", "3",
                                       "--engine", "transformers"])
    assert result.exit_code == 0, result.output
    assert "Loading weights" not in result.stderr and "%|" not in result.stderr
    report = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert report["config"]["dtype"] == "auto" and report["config"]["device"] is None  # what was asked
    ran = report["ran"]  # what ran
    assert (ran["device"], ran["dtype"], ran["engine"]) == ("cpu", "float32", "transformers")
    assert ran["versions"]["torch"] == torch.__version__ and ran["versions"]["transformers"]
    assert report["results"][0]["dtype"] == "float32"
