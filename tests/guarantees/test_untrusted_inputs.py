"""Checkpoint contents and config files are untrusted input: whatever bytes or values they hold, rejuv either
reads them or stops with a RejuvError naming the file; never another exception (property-based)."""

import json
import struct
import typing
from dataclasses import fields

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rejuv.errors import RejuvError
from rejuv.io.reader import Checkpoint
from rejuv.options import build_config
from rejuv.recipes.apply import ApplyConfig

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SCALARS = st.none() | st.booleans() | st.integers(-5, 1 << 40) | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
ENTRY = st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "BF16", "I8", "F8", 3]) | JSON,
                               "shape": st.lists(st.integers(-2, 6), max_size=3) | JSON,
                               "data_offsets": st.lists(st.integers(-2, 200), max_size=3) | JSON})


def _folder(tmp_path_factory, header: bytes, payload: bytes, index=None):
    folder = tmp_path_factory.mktemp("ckpt")
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + payload)
    if index is not None:
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def _opens_or_names_the_problem(folder) -> None:
    try:
        with Checkpoint(folder) as ckpt:
            for name in ckpt.names():
                ckpt.read_array(name, 0, ckpt.tensors[name].shape[0] if ckpt.tensors[name].shape else 1)
    except RejuvError as exc:
        assert str(folder) in str(exc)


@SETTINGS
@given(raw=st.binary(max_size=64))
def test_any_bytes_as_a_safetensors_file(tmp_path_factory, raw):
    folder = tmp_path_factory.mktemp("raw")
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(raw)
    _opens_or_names_the_problem(folder)


@SETTINGS
@given(header=st.dictionaries(st.text(min_size=1, max_size=6), ENTRY | JSON, max_size=3),
       payload=st.binary(max_size=48))
def test_any_header_values(tmp_path_factory, header, payload):
    _opens_or_names_the_problem(_folder(tmp_path_factory, json.dumps(header).encode(), payload))


@SETTINGS
@given(index=JSON | st.fixed_dictionaries({"weight_map": st.dictionaries(st.text(max_size=6),
                                                                           st.sampled_from(["model.safetensors",
                                                                                            "../x", "/etc/passwd", ""])
                                                                           | JSON, max_size=3)}))
def test_any_index(tmp_path_factory, index):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    _opens_or_names_the_problem(_folder(tmp_path_factory, header, b"\0" * 4, index))


@SETTINGS
@given(values=st.dictionaries(st.sampled_from([f.name for f in fields(ApplyConfig)] + ["unknown_key"]), JSON,
                              max_size=5))
def test_any_config_file_values(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("cfg") / "apply.yaml"
    path.write_text(json.dumps({"base": "b", "sft": "s", "out": "o", **values}))  # JSON is YAML
    try:
        cfg = build_config(ApplyConfig, {}, str(path))
    except RejuvError as exc:
        # a value of the file is named with the file; a rule about an option the file leaves out, by its flag
        flag = str(exc).split(":")[0]
        assert str(path) in str(exc) or (flag.startswith("--") and flag[2:].replace("-", "_") not in values), exc
        return
    hints = typing.get_type_hints(ApplyConfig)
    for f in fields(ApplyConfig):
        value = getattr(cfg, f.name)
        allowed = typing.get_args(hints[f.name]) or (hints[f.name],)
        assert value is None or isinstance(value, tuple(typing.get_origin(a) or a for a in allowed)), (f.name, value)


# Saved state read back: an attribution record and an evaluation result kept for a resume.
INDEX = st.integers(-3, 12) | JSON
PLAN_ENTRY = st.fixed_dictionaries({"axis": st.integers(-1, 2) | JSON, "indices": st.lists(INDEX, max_size=4) | JSON})
PLAN = st.dictionaries(st.sampled_from(["w.q", "w.q.bias", "w.down", "other"]) | st.text(max_size=4),
                       PLAN_ENTRY | JSON, max_size=3)
RECORD = st.fixed_dictionaries({
    "targets": st.lists(st.lists(st.integers(-2, 12) | st.floats(allow_nan=False) | JSON, max_size=5), max_size=3)
    | JSON,
    "dla_reconstruction_error": st.lists(st.floats(allow_nan=True) | JSON, max_size=3) | JSON,
    "grid": st.dictionaries(st.sampled_from(["0.01", "0.5", "1", "-0.1", "abc", "nan"]), PLAN | JSON, max_size=3)
    | JSON,
}) | JSON


@SETTINGS
@given(record=RECORD)
def test_any_attribution_record(record):
    from rejuv.data.calibration import Sample
    from rejuv.io.records import Checked
    from rejuv.method.attribution_record import parse_attribution

    layout = {"w.q": (0, 4, "w.q"), "w.q.bias": (0, 4, "w.q"), "w.down": (1, 6, "w.down")}
    samples = [Sample(list(range(10)), 4, "c.jsonl:1"), Sample(list(range(6)), 2, "c.jsonl:2")]
    try:
        found = parse_attribution(record, Checked("attribution.json", "attribution record"), layout, samples, 10)
    except RejuvError as exc:
        assert str(exc).startswith("attribution.json: not a valid attribution record")
        return
    for t in found.targets:  # whatever is accepted is usable as it is: no index wraps around or overruns
        assert 0 <= t.sample < len(samples) and t.position in samples[t.sample].predict_positions
        assert 0 <= t.token < 10
    for rho, plan in found.resets.items():
        assert 0 < rho < 1
        for name, entry in plan.items():
            axis, size, _ = layout[name]
            assert entry["axis"] == axis and all(0 <= i < size for i in entry["indices"])
            assert len(set(entry["indices"])) == len(entry["indices"])


@SETTINGS
@given(record=JSON | st.fixed_dictionaries({
    "result": st.fixed_dictionaries({"benchmark": st.just("b") | JSON, "problems": st.just(2) | JSON,
                                     "samples_per_problem": st.just(2) | JSON, "pass@1": st.floats() | JSON,
                                     "pass@k": st.dictionaries(st.sampled_from(["1", "2"]), st.floats() | JSON)
                                     | JSON,
                                     "correct_per_problem": st.lists(st.integers(-1, 3) | JSON, max_size=3),
                                     "calibration": JSON}),
    "samples": st.lists(st.fixed_dictionaries({"completion": st.text(max_size=3) | JSON,
                                               "correct": st.booleans() | JSON}), max_size=5) | JSON}))
def test_any_kept_evaluation_result(record):
    from rejuv.evaluation.kept import check_kept_result

    try:
        kept = check_kept_result(record, __import__("pathlib").Path("unit.json"), "b", 2, 2, [1, 2])
    except RejuvError as exc:
        assert str(exc).startswith("unit.json: not a valid kept evaluation result")
        return
    assert len(kept["samples"]) == 4 and all(0 <= c <= 2 for c in kept["result"]["correct_per_problem"])


def _recipe_configs():
    import importlib

    from rejuv.cli import COMMANDS

    return {name: importlib.import_module(module).RECIPE.config for name, (module, _) in COMMANDS.items()}


@SETTINGS
@given(command=st.sampled_from(sorted(_recipe_configs())), data=st.data())
def test_any_python_api_values(command, data):
    """Whatever a Python caller passes, a config either holds values of its declared types or refuses with a
    RejuvError naming the argument: never a TypeError or ValueError from deep inside a run."""
    import dataclasses
    from pathlib import Path

    config_cls = _recipe_configs()[command]
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    required = {n: ["x"] if f.metadata.get("positional") else "x" for n, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    chosen = data.draw(st.dictionaries(st.sampled_from(sorted(fields)), JSON | st.just(Path("p")), max_size=4))
    try:
        cfg = config_cls(**{**required, **chosen})
    except RejuvError as exc:
        assert str(exc).split(":")[0].split(".")[0] in fields, exc
        return
    from rejuv.options import _hints

    for name in chosen:
        value, kind = getattr(cfg, name), _hints(config_cls)[name]
        items = value if kind.is_list and isinstance(value, list) else [value]
        assert (value is None and kind.optional) or dataclasses.is_dataclass(value) or all(
            isinstance(v, kind.base) for v in items), (name, value)


NUMBERS = st.floats() | st.integers(-3, 300) | st.booleans() | st.text(max_size=4) | st.none()


@SETTINGS
@given(values=st.fixed_dictionaries({}, optional={
    "every": NUMBERS, "screen_tokens": NUMBERS, "entropy_floor": NUMBERS, "collapse_share": NUMBERS,
    "collapse_window": NUMBERS, "stop_on_collapse": NUMBERS, "seed": NUMBERS,
    "screen_prompts": JSON | st.lists(st.lists(st.integers(-2, 70), max_size=3), max_size=3)}))
def test_any_plasticity_callback_arguments(values):
    """The callback is a public entry like the CLI: whatever it is given, it holds values its screen can act on
    (a floor > 0, a share in (0, 1), true/false flags, prompts of token ids) or refuses naming the argument."""
    from rejuv.train.plasticity import PlasticityCallback

    try:
        callback = PlasticityCallback(**values)
    except RejuvError as exc:
        assert str(exc).split(":")[0] in values, exc
        return
    assert callback.entropy_floor > 0 and 0 < callback.collapse_share < 1 and callback.every >= 1
    assert isinstance(callback.stop_on_collapse, bool) and callback.screen_tokens >= 1
    assert all(ids and all(isinstance(t, int) and t >= 0 for t in ids) for ids in callback.screen_prompts)


@SETTINGS
@given(lines=st.lists(st.binary(max_size=40) | JSON.map(json.dumps) | st.builds(
    lambda s, t: json.dumps({"step": s, "seconds": t}), st.text(max_size=5) | JSON, st.floats() | JSON),
    max_size=6), cut=st.integers(0, 30))
def test_any_demo_time_log(tmp_path_factory, lines, cut):
    """The demo's time log read back: any bytes give rows of a step's name and a finite, non-negative time."""
    import math

    from rejuv.lab.steps import read_timings

    path = tmp_path_factory.mktemp("t") / "timings.jsonl"
    data = b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines)
    path.write_bytes(data[: max(0, len(data) - cut)])
    for row in read_timings(path):
        assert isinstance(row["step"], str) and math.isfinite(row["seconds"]) and row["seconds"] >= 0


@SETTINGS
@given(config=st.dictionaries(st.text(max_size=5), JSON.filter(lambda v: "Infinity" not in json.dumps(v)), max_size=4),
       where=st.sampled_from(["top", "nested", "list"]),
       value=st.sampled_from(["NaN", "Infinity", "-Infinity"]))
def test_a_non_finite_number_anywhere_in_a_config_is_named(tmp_path_factory, config, where, value):
    folder = _folder(tmp_path_factory, b"{}", b"")
    text = json.dumps({**config, "model_type": "llama", "x": {"top": 0, "nested": {"y": 0}, "list": [1, 0]}[where]})
    text = text.replace('"x": 0', f'"x": {value}').replace('"y": 0', f'"y": {value}').replace("[1, 0]",
                                                                                            f"[1, {value}]")
    (folder / "config.json").write_text(text)
    try:
        Checkpoint(folder).close()
    except RejuvError as exc:
        assert "config.json: x" in str(exc) and "is not a finite number" in str(exc), exc
        return
    raise AssertionError("a config with a non-finite number was read")
