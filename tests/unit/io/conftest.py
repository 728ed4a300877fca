"""A tiny Qwen2 checkpoint saved in one file and in 8 KB shards, for the reader and writer tests."""

import pytest

from tiny import build_model, save


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, tok = build_model("qwen2", seed=0)
    root = tmp_path_factory.mktemp("ckpt")
    save(model, tok, root / "single")
    save(model, tok, root / "sharded", max_shard_size="8KB")
    return model, root

