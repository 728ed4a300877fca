"""Saved state read back: strict JSON (no NaN or Infinity), and every check names the file and the place."""

import pytest

from rejuv.io.records import Checked, DamagedRecord, read_json, strict_loads


@pytest.mark.parametrize("text", ['{"x": NaN}', '[Infinity]', '{"a": {"b": -Infinity}}'])
def test_non_finite_numbers_are_refused(tmp_path, text):
    with pytest.raises(ValueError, match="is not a number JSON allows"):
        strict_loads(text)
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(DamagedRecord, match=r"r.json: not a readable thing \(.* is not a number JSON allows\)"):
        read_json(tmp_path / "r.json", "thing")


def test_missing_cut_and_binary_files_are_damaged_records(tmp_path):
    with pytest.raises(DamagedRecord, match="the thing is missing"):
        read_json(tmp_path / "none.json", "thing")
    (tmp_path / "cut.json").write_text('{"a": [1, 2')
    (tmp_path / "bin.json").write_bytes(b"\x00\xff")
    for name in ("cut.json", "bin.json"):
        with pytest.raises(DamagedRecord, match=f"{name}: not a readable thing"):
            read_json(tmp_path / name, "thing")


def test_checked_names_the_place_and_never_wraps_an_index():
    checked = Checked("f.json", "record")
    assert checked.get({"n": 3}, "n", "an integer") == 3 and checked.of(2, "a number", "x") == 2.0
    with pytest.raises(DamagedRecord, match=r"f.json: not a valid record: \['k'\]: missing"):
        checked.get({}, "k", "text")
    with pytest.raises(DamagedRecord, match=r"\['ok'\]: expected an integer, got True"):
        checked.get({"ok": True}, "ok", "an integer")
    with pytest.raises(DamagedRecord, match=r"\[3\]: -1 is outside \[0, 5\)"):
        checked.index(-1, 5, "[3]")
