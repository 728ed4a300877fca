"""No command may write over its inputs: an output that equals, contains or lies inside an input (folder or
file, through symlinks too) is refused before any work, with or without --overwrite, and nothing is touched."""

import hashlib

import pytest
from click.testing import CliRunner

from rejuv.cli import main


def _snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def inputs(tmp_path):
    root = tmp_path / "work"
    for folder in ("base", "sft", "ckpt"):
        (root / folder).mkdir(parents=True)
        (root / folder / "config.json").write_text("{}")
    for name in ("calib.jsonl", "data.jsonl"):
        (root / name).write_text('{"prompt": "1+1?", "completion": "2", "answer": "2"}\n')
    (tmp_path / "link").symlink_to(root)
    return root


def _commands(r):
    base, sft, ck, calib, data = (str(r / n) for n in ("base", "sft", "ckpt", "calib.jsonl", "data.jsonl"))
    return {
        "apply contains base and sft": (["apply", "--base", base, "--sft", sft, "--fusion-only", "--out", str(r)],
                                        "may not contain an input"),
        "apply over its calibration file": (["apply", "--base", base, "--sft", sft, "--calib", calib, "--out", calib],
                                            "may not be an input"),
        "apply inside its SFT folder": (["apply", "--base", base, "--sft", sft, "--fusion-only", "--out",
                                         str(r / "sft" / "out")], "may not be an input or lie inside one"),
        "apply through a symlink": (["apply", "--base", base, "--sft", sft, "--fusion-only", "--out",
                                     str(r.parent / "link")], "may not contain an input"),
        "diagnose contains a checkpoint": (["diagnose", ck, "--base", base, "--calib", calib, "--out", str(r)],
                                           "may not contain an input"),
        "eval contains its data": (["eval", ck, "--data", data, "--out", str(r)], "may not contain an input"),
        "sft contains its data": (["sft", "--model", ck, "--data", data, "--out", str(r)],
                                  "may not contain an input"),
        "rl contains its model": (["rl", "--model", ck, "--data", data, "--out", str(r)], "may not contain an input"),
        "plan contains its probe data": (["plan", ck, sft, "--base", base, "--calib", calib, "--probe-data", data,
                                          "--out", str(r)], "may not contain an input"),
        "export-verl over its data": (["export-verl", "--data", data, "--out", data], "may not be an input"),
    }


@pytest.mark.parametrize("case", list(_commands(__import__("pathlib").Path("x"))))
def test_an_output_over_an_input_is_refused_and_nothing_is_touched(inputs, case):
    args, message = _commands(inputs)[case]
    before = _snapshot(inputs)
    result = CliRunner().invoke(main, [*args, "--overwrite"])
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert _snapshot(inputs) == before


def test_an_output_under_a_regular_file_is_one_line(inputs):
    result = CliRunner().invoke(main, ["export-verl", "--data", str(inputs / "data.jsonl"), "--out",
                                       str(inputs / "calib.jsonl" / "out")])
    assert result.exit_code != 0 and "which is a file" in result.output


def test_a_path_inside_a_section_is_an_input_too(inputs):
    """plan's probe options are `rejuv rl`'s: its CHORD data is an input of plan, so an --out that holds it is
    refused even with --overwrite (it used to be deleted)."""
    out = inputs.parent / "plan-out"
    out.mkdir()
    (out / "expert.jsonl").write_text('{"prompt": "1+1?", "completion": "2"}\n')
    before = _snapshot(inputs.parent)
    r = inputs
    result = CliRunner().invoke(main, ["plan", str(r / "ckpt"), str(r / "sft"), "--base", str(r / "base"),
                                       "--calib", str(r / "calib.jsonl"), "--probe-data", str(r / "data.jsonl"),
                                       "--probe-chord-data", str(out / "expert.jsonl"), "--out", str(out),
                                       "--overwrite"])
    assert result.exit_code != 0 and "may not contain an input" in result.output, result.output
    assert _snapshot(inputs.parent) == before


@pytest.mark.parametrize("where", ["working folder", "user files", "other command"])
def test_overwrite_replaces_only_an_earlier_output_of_the_same_command(inputs, tmp_path, monkeypatch, where):
    from rejuv.io.output import write_marker

    out = tmp_path / "target"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    if where == "other command":
        write_marker(out, "eval")
    args = ["export-verl", "--data", str(inputs / "data.jsonl"), "--overwrite", "--out"]
    if where == "working folder":
        monkeypatch.chdir(out)
        args.append(".")
    else:
        args.append(str(out))
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "Traceback" not in result.output
    expected = "not of `rejuv export-verl`" if where == "other command" else "holds files rejuv did not write"
    assert expected in result.output, result.output
    assert _snapshot(tmp_path) == before


def test_overwrite_replaces_an_empty_folder_and_an_earlier_output(inputs, tmp_path):
    out = tmp_path / "verl"
    out.mkdir()
    args = ["export-verl", "--data", str(inputs / "data.jsonl"), "--out", str(out), "--overwrite"]
    assert CliRunner().invoke(main, args).exit_code == 0  # empty: replaced
    assert (out / ".rejuv-output").is_file() and (out / "train.parquet").is_file()
    assert CliRunner().invoke(main, args).exit_code == 0  # its own earlier output: replaced


def test_the_python_api_refuses_a_truthy_string_for_overwrite(llama_pair, tmp_path):
    import rejuv

    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(rejuv.RejuvError, match="overwrite: expected true or false, got 'false'"):
        rejuv.fuse(*llama_pair, out, overwrite="false")
    with pytest.raises(rejuv.RejuvError, match="holds files rejuv did not write"):
        rejuv.fuse(*llama_pair, out, overwrite=True)
    assert (out / "mine.txt").read_text() == "keep" and sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_the_demo_never_takes_over_a_folder_it_did_not_write(tmp_path):
    """`rejuv demo --out src/rejuv --overwrite` once deleted a source tree an earlier demo had written into."""
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "module.py").write_text("code")
    (tree / "preset.json").write_text('{"preset": "smoke"}')  # what an old demo left there
    before = _snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(main, ["demo", "--preset", "smoke", "--out", str(tree), *extra])
        assert result.exit_code != 0 and "holds files rejuv did not write" in result.output, result.output
    assert _snapshot(tmp_path) == before
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["demo", "--preset", "smoke", "--out", str(tmp_path / "file")])
    assert result.exit_code != 0 and "exists and is not a folder" in result.output and "Traceback" not in result.output


# Text options that name no file or folder (everything else that takes text is a declared path or a choice).
NOT_PATHS = {"ability": "verl's ability label", "data_source": "verl's data_source label",
             "device": "a device name", "loss_type": "a TRL loss name", "lr_scheduler": "a scheduler name",
             "max_shard_size": "a size", "names": "labels", "report_to": "tracker names",
             "rewards": "reward names or module:function", "rho": "a number or auto",
             "search_on": "a checkpoint's label or one of the declared checkpoints", "system_prompt": "a prompt"}


def test_every_option_that_takes_text_is_a_declared_path_or_known_not_to_be_one():
    """The guard derives every command's inputs and outputs from the declarations: a new path option that is
    not declared fails here, before it can lose a user's file."""
    import importlib

    from rejuv.cli import COMMANDS
    from rejuv.options import _specs

    undeclared = set()

    def walk(config_cls):
        for field, kind, section in _specs(config_cls):
            if section is not None:
                walk(section)
            elif str in kind.base and not field.metadata.get("path") and not field.metadata.get("choices"):
                undeclared.add(field.name)

    for module, _ in COMMANDS.values():
        walk(importlib.import_module(module).RECIPE.config)
    assert undeclared == set(NOT_PATHS)


def test_an_output_that_is_a_symbolic_link_is_refused(inputs, tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "alias").symlink_to(target)
    result = CliRunner().invoke(main, ["export-verl", "--data", str(inputs / "data.jsonl"), "--out",
                                       str(tmp_path / "alias"), "--overwrite"])
    assert result.exit_code != 0 and "is a symbolic link" in result.output and (tmp_path / "alias").is_symlink()


def test_the_yaml_config_file_is_an_input_too(inputs, tmp_path):
    from rejuv.io.output import write_marker

    out = tmp_path / "verl"
    out.mkdir()
    write_marker(out, "export-verl")  # an earlier output the user keeps the config in
    config = out / "export.yaml"
    config.write_text(f"data: {inputs / 'data.jsonl'}\nout: {out}\noverwrite: true\n")
    result = CliRunner().invoke(main, ["export-verl", "--config", str(config)])
    assert result.exit_code != 0 and "may not contain an input" in result.output and config.is_file()


@pytest.mark.slow
@pytest.mark.parametrize(("command", "added"), [("apply", "notes.txt"), ("diagnose", "analysis/notes.md")])
def test_overwrite_keeps_an_earlier_output_a_user_added_a_file_to(llama_pair, calib_file, tmp_path, command, added):
    """`rejuv apply --out out`, a user's notes in out/, the same command with --overwrite: refused, naming the
    file, and nothing of the earlier output or the notes is lost (it used to exit 0 with the notes gone)."""
    base, sft = (str(p) for p in llama_pair)
    out = tmp_path / "out"
    args = {"apply": ["apply", "--base", base, "--sft", sft, "--fusion-only"],
            "diagnose": ["diagnose", sft, "--base", base, "--calib", str(calib_file), "--max-samples", "2"]}[command]
    args += ["--out", str(out), "--no-progress"]
    assert CliRunner().invoke(main, args).exit_code == 0
    (out / added).parent.mkdir(exist_ok=True)
    (out / added).write_text("my notes")
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(main, [*args, "--overwrite"])
    assert result.exit_code == 1 and f"{added}, which rejuv did not write" in result.output, result.output
    assert "so the folder is kept" in result.output and _snapshot(tmp_path) == before
    (out / added).unlink()  # the notes moved out: the earlier output is replaced
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0
