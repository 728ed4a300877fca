"""What reads as a Hub ID, and what a record says of where a model came from (the fetching itself runs against
a local Hub in tests/recipes/test_hub.py)."""

import pytest

from rejuv.io.hub import Source, hub_id, resolve


@pytest.mark.parametrize(("spec", "found"), [
    ("Qwen/Qwen3-0.6B-Base", ("Qwen/Qwen3-0.6B-Base", None)), ("org/name@v1.2", ("org/name", "v1.2")),
    ("org/name@refs/pr/3", ("org/name", "refs/pr/3")), ("org/name@0123abcd", ("org/name", "0123abcd")),
    ("base/", None), ("runs/sft/epoch-2", None), ("/abs/path", None), ("./org/name", None), ("../a/b", None),
    ("name", None), ("org/", None), ("", None)])
def test_what_reads_as_a_hub_id(spec, found):
    assert hub_id(spec) == found


def test_a_local_path_is_not_resolved_and_records_say_where_models_came_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert resolve("org/name") == Source("org/name", "org/name")  # a local folder of that name wins
    assert Source("org/name", "org/name").record() == {"path": "org/name"}
    assert Source("org/n@v1", "/cache/x", "org/n", "v1", "abc").record() == {"hub_id": "org/n", "revision": "v1",
                                                                             "commit": "abc"}
    assert Source("org/n", "/cache/x", "org/n", None, "abc").record()["revision"] == "main"
