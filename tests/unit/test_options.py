"""Options: one typed source for the CLI and YAML; wrong types and unknown keys are errors naming the key."""

import subprocess
import sys
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from rejuv.cli import main
from rejuv.errors import RejuvError
from rejuv.options import Config, build_config, click_params, compose, option, settings_of


@dataclass
class Toy(Config):
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
class Outer(Config):
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

    from rejuv.planner.plan import PlanConfig, ProbeSettings
    from rejuv.recipes.eval import EvalConfig
    from rejuv.recipes.rl import RLRecipeConfig

    probe = {f.name for f in fields(ProbeSettings)}
    assert {"learning_rate", "beta", "temperature", "loss_type", "use_vllm", "lora"} <= probe
    assert probe | {"model", "data", "out", "max_steps", "seed", "save_model", "chat_template", "trust_remote_code",
                    "allow_pickle", "progress", "overwrite", "base", "continue_adapter"} == {
        f.name for f in fields(RLRecipeConfig)}
    evaluation = {f.name for f in fields(type(PlanConfig.__dataclass_fields__["evaluation"].default_factory()))}
    assert evaluation | set(EvalConfig.SET_BY_CALLER) == {f.name for f in fields(EvalConfig)}
    result = CliRunner().invoke(main, ["plan", "--help"]).output
    assert "--probe-learning-rate" in result and "--eval-temperature" in result and "--probe-use-vllm" in result


API_CASES = [  # (keyword, value given to the Python API, the same value in a YAML file)
    ("alpha", "abc", "abc"),
    ("fusion_only", "no", "'no'"),
    ("overwrite", "false", "'false'"),
    ("max_shard_size", 0, "0"),
    ("rho", "most", "most"),
    ("rho_grid", "0.01,0", "[0.01, 0]"),
    ("seed", -1, "-1"),
    ("workers", 0, "0"),
    ("dtype", "float64", "float64"),
    ("alpha", True, "true"),
]


@pytest.mark.parametrize("name, value, text", API_CASES)
def test_the_python_api_refuses_what_the_cli_and_yaml_refuse_with_the_same_words(tmp_path, name, value, text):
    """`rejuv.fuse(..., alpha="abc")` and `alpha: abc` in a YAML file end in the same one-line problem, named by
    the argument (API) or by the file and key (YAML), before any work."""
    import rejuv
    from rejuv.recipes.apply import ApplyConfig

    with pytest.raises(RejuvError) as api:
        rejuv.rejuvenate(tmp_path / "b", tmp_path / "s", tmp_path / "c.jsonl", tmp_path / "o", **{name: value})
    assert str(api.value).startswith(f"{name}: ")
    path = _yaml(tmp_path, f"base: b\nsft: s\ncalib: c\nout: o\n{name}: {text}\n")
    with pytest.raises(RejuvError) as yml:
        build_config(ApplyConfig, {}, path)
    assert str(yml.value) == f"{path}: option {name}: " + str(api.value).removeprefix(f"{name}: ")
    assert not (tmp_path / "o").exists()


def test_the_python_api_reads_values_as_the_command_line_does(tmp_path):
    from rejuv.recipes.apply import ApplyConfig
    from rejuv.recipes.diagnose import DiagnoseConfig

    cfg = ApplyConfig(base=tmp_path / "b", sft="s", out="o", calib="c", alpha="0.5", rho="AUTO",
                      rho_grid="0.01,0.03", max_shard_size="500MB")
    assert (cfg.base, cfg.alpha, cfg.rho, cfg.rho_grid) == (str(tmp_path / "b"), 0.5, "auto", [0.01, 0.03])
    one = DiagnoseConfig(checkpoints="ckpt", base="b", calib="c", out="o", evaluation={"temperature": 0.2})
    assert one.checkpoints == ["ckpt"] and one.evaluation.temperature == 0.2  # not one checkpoint per character
    with pytest.raises(RejuvError, match=r"evaluation.temperature: must be ≥ 0, got -1"):
        DiagnoseConfig(checkpoints=["c"], base="b", calib="c", out="o", evaluation={"temperature": -1})
    with pytest.raises(RejuvError, match="evaluation: unknown option 'temprature'"):
        DiagnoseConfig(checkpoints=["c"], base="b", calib="c", out="o", evaluation={"temprature": 1})
    with pytest.raises(RejuvError, match="seeds: 0 is given twice"):
        build_config(__import__("rejuv.lab.demo", fromlist=["x"]).DemoConfig, {"seeds": "0,0,0"})


def test_a_section_value_refused_by_a_rule_names_the_yaml_file_and_section(tmp_path):
    """plan's YAML `evaluation: {temperature: -1}` is refused when the config is built, before any work, naming
    the file and the dotted key; the same on the command line names the flag."""
    from rejuv.planner.plan import PlanConfig

    path = _yaml(tmp_path, "base: b\ncalib: c\nprobe_data: d\nout: o\nevaluation:\n  temperature: -1\n")
    with pytest.raises(RejuvError) as err:
        build_config(PlanConfig, {"checkpoints": ("a", "b")}, path)
    assert str(err.value) == f"{path}: option evaluation.temperature: must be ≥ 0, got -1.0"
    with pytest.raises(RejuvError, match=r"^--eval-temperature: must be ≥ 0, got -1.0$"):
        build_config(PlanConfig, {"checkpoints": ("a", "b"), "base": "b", "calib": "c", "probe_data": "d", "out": "o",
                                  "evaluation__temperature": "-1"})
    with pytest.raises(RejuvError, match=r"^--probe-num-generations: must be ≥ 2, got 1$"):
        build_config(PlanConfig, {"checkpoints": ("a", "b"), "base": "b", "calib": "c", "probe_data": "d", "out": "o",
                                  "probe__num_generations": "1"})
    with pytest.raises(RejuvError, match="probe.per_device_batch_size: the completions per step"):
        PlanConfig(checkpoints=["a", "b"], base="b", calib="c", probe_data="d", out="o",
                   probe={"num_generations": 3})


def test_a_rule_between_options_is_told_by_the_one_the_user_gave(tmp_path):
    from rejuv.planner.plan import PlanConfig

    path = _yaml(tmp_path, "base: b\ncalib: c\nprobe_data: d\nout: o\nprobe:\n  num_generations: 3\n")
    with pytest.raises(RejuvError, match=rf"^{path}: option probe.num_generations: the completions per step"):
        build_config(PlanConfig, {"checkpoints": ("a", "b")}, path)
    with pytest.raises(RejuvError, match="^--probe-per-device-batch-size: the completions per step"):
        build_config(PlanConfig, {"checkpoints": ("a", "b"), "probe__per_device_batch_size": "8"}, path)
