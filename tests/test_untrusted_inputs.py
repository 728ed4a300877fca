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
        assert str(path) in str(exc)
        return
    hints = typing.get_type_hints(ApplyConfig)
    for f in fields(ApplyConfig):
        value = getattr(cfg, f.name)
        allowed = typing.get_args(hints[f.name]) or (hints[f.name],)
        assert value is None or isinstance(value, tuple(typing.get_origin(a) or a for a in allowed)), (f.name, value)
