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
