"""Options: one typed source for the CLI and YAML; wrong types and unknown keys are errors naming the key."""

import subprocess
import sys
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.options import build_config, option


@dataclass
class Toy:
    """A toy recipe config."""

    out: str = option(help="Output.")
    alpha: float = option(0.5, help="A share.")
    steps: int = option(3, help="Steps.")
    overwrite: bool = option(False, help="Replace.")
    rho: float | str = option(0.01, help="A number or auto.")
    grid: list[float] | None = option(None, help="Numbers.")
    names: list[str] = option([], flag="--name", help="Labels.")
    mode: str = option("a", choices=("a", "b"), help="A choice.")


def _yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_values_are_typed_and_the_command_line_wins(tmp_path):
    path = _yaml(tmp_path, "out: o\nalpha: 1\nsteps: 4\noverwrite: true\nrho: auto\ngrid: [0.1, 1]\nname: [x]\n"
                           .replace("name:", "names:"))
    cfg = build_config(Toy, {"steps": "7", "grid": "0.2,0.3", "names": ("y", "z")}, path)
    assert cfg == Toy(out="o", alpha=1.0, steps=7, overwrite=True, rho="auto", grid=[0.2, 0.3], names=["y", "z"])
    assert isinstance(cfg.alpha, float)
    assert build_config(Toy, {"out": "o", "rho": "0.003"}).rho == 0.003  # a number where one is taken


@pytest.mark.parametrize("text, message", [
    ("overwrite: 'false'", "option overwrite: expected true or false, got 'false'"),
    ("alpha: abc", "option alpha: expected a number, got 'abc'"),
    ("alpha: [1]", "option alpha: expected a number, got [1]"),
    ("alpha: .nan", "option alpha: must be a finite number"),
    ("steps: 2.5", "option steps: expected an integer, got 2.5"),
    ("steps: true", "option steps: expected an integer, got True"),
    ("grid: [0.1, x]", "option grid: expected a number, got 'x'"),
    ("mode: c", "option mode: 'c' is not one of a, b"),
    ("out: null", "option out: a value is required, got null"),
    ("colour: red", "unknown option 'colour'"),
    ("- a list", "expected a mapping of option names to values, got list"),
])
def test_bad_yaml_values_name_the_file_and_key(tmp_path, text, message):
    path = _yaml(tmp_path, ("out: o\n" if not text.startswith(("out", "-")) else "") + text + "\n")
    with pytest.raises(RejuvError, match=None) as err:
        build_config(Toy, {}, path)
    assert message in str(err.value) and path in str(err.value)


def test_command_line_errors_name_the_option():
    with pytest.raises(RejuvError, match=r"--steps: expected an integer, got 'many'"):
        build_config(Toy, {"out": "o", "steps": "many"})
    with pytest.raises(RejuvError, match="missing required option.*--out"):
        build_config(Toy, {})


def test_cli_options_come_from_the_config_with_registries_listed():
    runner = CliRunner()
    rl = runner.invoke(main, ["rl", "--help"]).output
    for name in ("math_verify", "exact_match", "format", "brier"):  # the reward registry, not a hand-kept list
        assert name in rl
    demo = runner.invoke(main, ["demo", "--help"]).output
    from rejuv.lab.presets import ARMS, PRESETS

    assert all(a in demo for a in ARMS) and all(p in demo for p in PRESETS)
    sft = runner.invoke(main, ["sft", "--help"]).output
    assert "--warmup-steps" in sft and "[3e-06]" in sft  # every field is an option, its default shown
    bad = runner.invoke(main, ["apply", "--base", "b", "--sft", "s", "--out", "o", "--alpha", "nan"])
    assert bad.exit_code != 0 and "--alpha: must be a finite number" in bad.output and "Traceback" not in bad.output


def test_overwrite_false_in_yaml_does_not_replace_an_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("x")
    config = _yaml(tmp_path, f"base: b\nsft: s\nout: {out}\nfusion_only: true\noverwrite: 'false'\n")
    result = CliRunner().invoke(main, ["apply", "--config", config])
    assert result.exit_code != 0 and "option overwrite" in result.output
    assert (out / "keep").read_text() == "x"


def test_apply_fusion_only_and_help_start_without_torch():
    code = ("import sys\nfrom rejuv.cli import main\n"
            "try:\n    main(['apply', '--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'trl' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_an_unforeseen_failure_is_one_line_and_debug_shows_the_traceback(monkeypatch):
    import rejuv.recipes.export_verl as module
    from rejuv.options import Recipe

    def broken(cfg):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(module, "RECIPE", Recipe(module.ExportVerlConfig, broken, lambda cfg, result: ""))
    args = ["export-verl", "--data", "d.jsonl", "--out", "o"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "ZeroDivisionError: boom" in result.output and "--debug" in result.output
    assert "Traceback" not in result.output
    debug = CliRunner().invoke(main, ["--debug", *args])
    assert isinstance(debug.exception, ZeroDivisionError)
