"""Models named by Hub ID, against a local Hub on 127.0.0.1 (tests/hub.py) through the real huggingface_hub client:
fetched at a revision (only what rejuv reads), recorded with the commit they resolved to, found in the cache
offline, and each failure (an unknown repo, a gated one, a missing revision, pickle weights only, offline with
nothing cached) one line before any work."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rejuv.cli import main

from hub import LocalHub
from tiny import build_model, make_lora, save, write_calibration

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A base, an adapter over it at two revisions (v1 and main), a full SFT model, a gated copy of the base and
    a repo of pickle weights only."""
    import torch

    root = tmp_path_factory.mktemp("hub")
    model, tok = build_model("llama", seed=0)
    base = save(model, tok, root / "base")
    (base / "README.md").write_text("a model card rejuv does not need\n")
    hub = LocalHub()
    commits = {"base": hub.add("org/base", base)}
    commits["v1"] = hub.add("org/sft-lora", make_lora(model, root / "v1", seed=1, tok=tok, base_name="org/base"),
                            revision="v1")
    commits["main"] = hub.add("org/sft-lora", make_lora(model, root / "v2", seed=2, tok=tok, base_name="org/base"))
    hub.add("org/gated", base, token="hf_secret")
    pickled = save(model, tok, root / "pickled")
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    hub.add("org/pickled", pickled)
    write_calibration(root / "calib.jsonl", n=6)
    (root / "bench.jsonl").write_text(json.dumps({"problem": "compute 1+2.", "answer": "3"}) + "\n")
    yield hub, root, commits
    hub.close()


@pytest.fixture
def online(published, tmp_path, monkeypatch):
    """huggingface_hub pointed at the local Hub with an empty cache, in this process."""
    from huggingface_hub import constants

    import rejuv.io.hub

    hub, root, commits = published
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # what HF_ENDPOINT sets when huggingface_hub is imported
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(rejuv.io.hub, "_RESOLVED", {})
    hub.requests.clear()
    return hub, root, commits


def test_apply_with_hub_ids_end_to_end(published, tmp_path):
    """`rejuv apply --base org/base --sft org/sft-lora@v1 --calib … --out …` as a user types it (HF_ENDPOINT,
    HF_HOME): the adapter at v1, not main; the commits in rejuvenation.json; the Hub IDs on the model card."""
    hub, root, commits = published
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    hub.requests.clear()
    result = subprocess.run([sys.executable, "-m", "rejuv.cli", "apply", "--base", "org/base",
                             "--sft", "org/sft-lora@v1", "--calib", str(root / "calib.jsonl"), "--rho", "0.05",
                             "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "out" / "rejuvenation.json").read_text())
    assert manifest["base"] == "org/base" and manifest["sft"] == "org/sft-lora@v1"
    assert manifest["sources"] == {
        "org/base": {"hub_id": "org/base", "revision": "main", "commit": commits["base"]},
        "org/sft-lora@v1": {"hub_id": "org/sft-lora", "revision": "v1", "commit": commits["v1"]}}
    assert manifest["sft_is_adapter"] and manifest["neurons_reset"] > 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert "- org/base\n- org/sft-lora\nbase_model_relation: merge" in card
    assert "rejuv apply --base org/base --sft org/sft-lora@v1" in card  # the rebuild command names the IDs
    fetched = {r.split("/resolve/")[1].split("/", 1)[1] for r in hub.requests
               if r.startswith("GET") and "/resolve/" in r}
    assert "README.md" not in fetched and "adapter_model.safetensors" in fetched and "model.safetensors" in fetched
    assert f"[hub] fetching org/sft-lora@{commits['v1'][:12]}" in result.stderr  # progress, in a log too


def test_the_same_run_offline_from_the_filled_cache(online, tmp_path, monkeypatch):
    from huggingface_hub import constants

    import rejuv.io.hub

    hub, root, commits = online
    args = ["eval", "org/sft-lora", "--data", str(root / "bench.jsonl"), "-k", "1", "--max-new-tokens", "2",
            "--no-progress"]
    first = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "a" / "eval.json").read_text())
    assert report["results"][0]["checkpoint"] == "org/sft-lora"  # named as given, not by the cache folder
    assert report["sources"]["org/sft-lora"] == {"hub_id": "org/sft-lora", "revision": "main",
                                                 "commit": commits["main"]}
    assert report["sources"]["org/base"]["commit"] == commits["base"]  # the base the adapter names, from the Hub
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(rejuv.io.hub, "_RESOLVED", {})
    hub.requests.clear()
    again = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    assert hub.requests == []  # nothing asked of the Hub
    offline = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert offline["results"] == report["results"]
    assert offline["sources"]["org/sft-lora"]["commit"] == commits["main"]


@pytest.mark.parametrize(("spec", "refused"), [
    ("org/missing", "org/missing: no model org/missing on http://127.0.0.1:"),
    ("org/gated", "org/gated: a gated repo on http://127.0.0.1:"),
    ("org/sft-lora@v9", "org/sft-lora@v9: org/sft-lora has no revision 'v9'"),
    ("org/pickled", "org/pickled: the repo holds only pickle weights (*.bin), which can run arbitrary code when "
                    "loaded; nothing was downloaded"),
])
def test_what_the_hub_refuses_is_one_line_before_any_work(online, tmp_path, spec, refused):
    hub, root, commits = online
    result = CliRunner().invoke(main, ["apply", "--base", spec, "--sft", "org/sft-lora", "--fusion-only",
                                       "--out", str(tmp_path / "out"), "--no-progress"])
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(lines) == 1 and refused in lines[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    assert not any("pytorch_model.bin" in r for r in hub.requests)  # refused before anything was downloaded


def test_a_token_opens_a_gated_repo(online, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    result = CliRunner().invoke(main, ["apply", "--base", "org/gated", "--sft", "org/sft-lora", "--fusion-only",
                                       "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output


def test_offline_with_nothing_cached_is_one_line(online, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = CliRunner().invoke(main, ["apply", "--base", "org/base", "--sft", "org/sft-lora", "--fusion-only",
                                       "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1 and "org/base: not in the Hugging Face cache" in result.output, result.output
    assert "HF_HUB_OFFLINE is set" in result.output and online[0].requests == []


def test_a_local_folder_of_that_name_wins(online, tmp_path, monkeypatch):
    hub, root, commits = online
    model, tok = build_model("llama", seed=0)
    monkeypatch.chdir(tmp_path)
    save(model, tok, tmp_path / "org" / "base")
    result = CliRunner().invoke(main, ["apply", "--base", "org/base", "--sft", "org/base", "--fusion-only",
                                       "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert hub.requests == [] and json.loads((tmp_path / "out" / "rejuvenation.json").read_text())["sources"] == {}
