"""The output folder: refused when it exists or holds an input, written in a temporary sibling that is
renamed into place only when everything inside it has been written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from rejuv.errors import RejuvError


def check_output_free(out: str | os.PathLike, overwrite: bool,
                      inputs: tuple[str | os.PathLike | None, ...] = ()) -> None:
    """Fail early, before any work, if `out` exists (without overwrite), or equals, contains or lies inside
    any input folder or file (after resolving symlinks): replacing the output must never touch an input."""
    out = Path(out)
    out_resolved = out.resolve()
    for inp in inputs:
        if inp is None:
            continue
        inp_resolved = Path(inp).resolve()
        if out_resolved == inp_resolved or inp_resolved in out_resolved.parents:
            raise RejuvError(f"{out}: the output may not be an input or lie inside one ({inp})")
        if out_resolved in inp_resolved.parents:
            raise RejuvError(f"{out}: the output may not contain an input ({inp}); choose another --out")
    if out.exists() and not out.is_dir():
        raise RejuvError(f"{out}: exists and is not a folder")
    if out.exists() and not overwrite:
        raise RejuvError(f"{out}: output folder exists; pass --overwrite to replace it")
    for parent in out_resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RejuvError(f"{out}: cannot be created under {parent}, which is a file")
            break


def _sibling_stem(out: Path) -> str:
    """`.<name>` for the temporary and old siblings; a long name is shortened (and hashed, to stay distinct)
    so that the sibling's name stays within the 255 bytes a file system allows."""
    name = out.name
    if len(name.encode()) > 200:
        name = name.encode()[:160].decode(errors="ignore") + "-" + hashlib.sha256(out.name.encode()).hexdigest()[:12]
    return f".{name}"


def _tmp_prefix(out: Path) -> str:
    return f"{_sibling_stem(out)}.rejuv-tmp-"


def _remove_stale_tmp_dirs(out: Path) -> None:
    """Clear what a killed earlier run left beside `out` (only when that run's process is gone): its
    temporary folder, and the old output it was replacing. A run killed between moving the old output
    aside and moving the new one in left no `out`: the old output is put back instead."""
    parent = out.parent
    if not parent.is_dir():
        return
    for pattern in (_tmp_prefix(out) + "*", f"{_sibling_stem(out)}.rejuv-old-*"):
        for item in sorted(parent.glob(pattern)):
            pid_text = item.name.rsplit("-", 1)[-1]
            if pid_text.isdigit() and _pid_alive(int(pid_text)):
                continue
            if "rejuv-old-" in item.name and not out.exists():
                os.replace(item, out)
                continue
            shutil.rmtree(item, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Failures of writing that the system reports, as a user reads them.
_REFUSED_WRITES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                   errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                   errno.EPERM: "permission denied", errno.ENAMETOOLONG: "a file name is too long"}


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; rename it to `out` only if the block succeeds. On any failure the
    temporary folder is removed; a write the system refuses (read-only, no space, no permission) is one line."""
    out = Path(out).resolve()  # `--out .` has no name of its own to put a temporary sibling beside
    check_output_free(out, overwrite)
    tmp = out.parent / f"{_tmp_prefix(out)}{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp_dirs(out)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        raise RejuvError(f"{out}: cannot write the output here: {_REFUSED_WRITES.get(exc.errno, exc.strerror)}") \
            from None
    try:
        yield tmp
        if out.exists() and not overwrite:  # appeared while we worked
            raise RejuvError(f"{out}: output folder appeared while writing; pass --overwrite to replace it")
        if out.exists():
            old = out.parent / f"{_sibling_stem(out)}.rejuv-old-{os.getpid()}"
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(old, out)  # the old output stays where it was
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno not in _REFUSED_WRITES:
            raise
        raise RejuvError(f"{out}: cannot write the output: {_REFUSED_WRITES[exc.errno]} ({exc.filename}); "
                         "nothing was left behind") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
