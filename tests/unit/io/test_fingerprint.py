"""Fingerprints of inputs (io/fingerprint.py): what makes a kept result stale, and what does not."""

from __future__ import annotations

import hashlib
import os

from rejuv.io.fingerprint import file_sha256, folder_fingerprint


def test_a_folder_fingerprint_changes_with_a_file_and_ignores_what_it_is_told_to(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()  # only the files at the top count
    first = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == first
    (tmp_path / "sub" / "deep.bin").write_bytes(b"y")
    assert folder_fingerprint(tmp_path) == first
    (tmp_path / "attribution.json").write_text("{}")  # written into the folder by the result itself
    assert folder_fingerprint(tmp_path, exclude=("attribution.json",)) == first
    assert folder_fingerprint(tmp_path) != first
    os.remove(tmp_path / "attribution.json")
    stat = (tmp_path / "model.safetensors").stat()
    (tmp_path / "model.safetensors").write_bytes(b"z" * 10)  # same size, new bytes: a new modification time
    os.utime(tmp_path / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert folder_fingerprint(tmp_path) != first


def test_file_sha256_reads_in_blocks_and_equals_hashlib(tmp_path):
    data = os.urandom((1 << 20) * 2 + 123)  # over two blocks, the last one short
    (tmp_path / "data.jsonl").write_bytes(data)
    assert file_sha256(tmp_path / "data.jsonl") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
