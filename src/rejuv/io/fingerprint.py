"""What an input was when a result was made from it: a checkpoint folder's files (names, sizes, modification
times), a data file's bytes. A result kept on disk (an attribution, an evaluation waiting to resume) is
reused only while its inputs still match."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def folder_fingerprint(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> str:
    """The files at the top of `folder` (name, size, modification time), hashed: a changed checkpoint differs.
    Reading no contents keeps it instant for a 140 GB checkpoint; a file rewritten with new bytes has a new
    modification time. `exclude` names files a result writes into the folder itself."""
    files = sorted(f for f in Path(folder).iterdir() if f.is_file() and f.name not in exclude)
    listing = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
