"""Options: one typed source for the CLI and YAML; wrong types and unknown keys are errors naming the key."""

import subprocess
import sys
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.options import build_config, click_params, compose, option, settings_of


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


Inner = settings_of(Toy, "Inner", owned=("out", "names"), defaults={"steps": 9, "grid": [1.0]})


@dataclass
class Outer:
    """A recipe that runs Toy as one of its steps."""

    out: str = option(help="Output.")
    inner: Inner = option(Inner(), flag="--in", help="Toy:")
    steps: int = option(1, help="Outer steps.")


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


def test_a_section_keeps_the_inner_recipes_fields_types_and_the_callers_defaults(tmp_path):
    cfg = build_config(Outer, {"out": "o"})
    assert cfg.inner == Inner(alpha=0.5, steps=9, overwrite=False, rho=0.01, grid=[1.0], mode="a")
    assert cfg.inner.grid is not build_config(Outer, {"out": "o"}).inner.grid  # no shared default list
    path = _yaml(tmp_path, "out: o\nsteps: 2\ninner:\n  steps: 5\n  mode: b\n")
    cfg = build_config(Outer, {"inner__alpha": "0.25", "inner__mode": None}, path)  # click's <field>__<option>
    assert (cfg.steps, cfg.inner.steps, cfg.inner.mode, cfg.inner.alpha) == (2, 5, "b", 0.25)
    toy = compose(Toy, cfg.inner, out="x", names=["n"])
    assert toy == Toy(out="x", alpha=0.25, steps=5, overwrite=False, rho=0.01, grid=[1.0], names=["n"], mode="b")


@pytest.mark.parametrize("text, message", [
    ("inner:\n  steps: x", "option inner.steps: expected an integer, got 'x'"),
    ("inner:\n  out: o", "option inner: unknown option 'out'"),  # owned by the caller
    ("inner: 3", "option inner: expected a mapping of inner options, got 3"),
    ("inner:\n  mode: c", "option inner.mode: 'c' is not one of a, b"),
])
def test_bad_section_values_name_the_file_and_the_dotted_key(tmp_path, text, message):
    path = _yaml(tmp_path, "out: o\n" + text + "\n")
    with pytest.raises(RejuvError) as err:
        build_config(Outer, {}, path)
    assert message in str(err.value) and path in str(err.value)


def test_section_flags_carry_the_prefix_and_the_inner_help():
    params = {p.name: p for p in click_params(Outer)}
    assert params["inner__alpha"].opts == ["--in-alpha"]
    assert params["inner__overwrite"].secondary_opts == ["--no-in-overwrite"]
    assert params["inner__steps"].help.startswith("Toy: Steps.") and "[9]" in params["inner__steps"].help
    assert "inner__out" not in params and "inner__names" not in params
    with pytest.raises(RejuvError, match="--in-steps: expected an integer"):
        build_config(Outer, {"out": "o", "inner__steps": "many"})
    with pytest.raises(ValueError, match="required field 'out'"):
        settings_of(Toy, "Bad", owned=())


def test_plan_composes_its_probes_and_evaluations_from_rl_and_eval():
    """Every option of `rejuv rl` and `rejuv eval` that plan does not set itself is a plan option."""
    from dataclasses import fields

    from rejuv.recipes.eval import SET_BY_CALLER, EvalConfig
    from rejuv.recipes.plan import PlanConfig, ProbeSettings
    from rejuv.recipes.rl import RLRecipeConfig

    probe = {f.name for f in fields(ProbeSettings)}
    assert {"learning_rate", "beta", "temperature", "loss_type", "use_vllm", "lora"} <= probe
    assert probe | {"model", "data", "out", "max_steps", "seed", "save_model", "chat_template", "trust_remote_code",
                    "allow_pickle", "progress", "overwrite"} == {f.name for f in fields(RLRecipeConfig)}
    evaluation = {f.name for f in fields(type(PlanConfig.__dataclass_fields__["evaluation"].default_factory()))}
    assert evaluation | set(SET_BY_CALLER) == {f.name for f in fields(EvalConfig)}
    result = CliRunner().invoke(main, ["plan", "--help"]).output
    assert "--probe-learning-rate" in result and "--eval-temperature" in result and "--probe-use-vllm" in result
