"""The output folder: refused when it exists or holds an input, written in a temporary sibling that is
renamed into place only when everything inside it has been written.

Every output rejuv writes carries a marker (`.rejuv-output`) naming the command and listing every file it
wrote, with its size. `--overwrite` replaces only a folder that is empty or carries the marker of the same
command and holds nothing but what the marker lists, as it was written: a file a user added (at any depth),
changed or linked there is named, and the folder is kept. Never a working folder, a source tree or a folder
with a user's files. One run at a time writes an output (`output_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from rejuv.errors import RejuvError

MARKER = ".rejuv-output"
# What rejuv itself leaves inside an output while it works (a step's temporary or replaced folder, eval's
# kept results): replacing the output may remove these, whichever run left them.
_SCRATCH = re.compile(r"^\..+\.(rejuv-(tmp-(dist)?\d+|old-\d+|partial)|\d+\.tmp)$")


def resolved(path: str | os.PathLike) -> Path:
    """`path` made absolute with its symbolic links followed; a loop of links is one line, naming the path."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as exc:  # Python < 3.13 says RuntimeError, later ones OSError (ELOOP)
        raise RejuvError(f"{path}: cannot be followed to a folder ({exc}); a loop of symbolic links?") from None


def listing(folder: str | os.PathLike, own_marker: bool = False) -> dict[str, int]:
    """Every file below `folder` (links not followed), as its path relative to `folder` → its size; the
    folder's marker itself left out unless `own_marker` (a step's output listed inside the demo's). Folders
    are not listed: an empty folder holds nothing to lose."""
    folder = Path(folder)
    found: dict[str, int] = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root, name)
            relative = path.relative_to(folder).as_posix()
            if relative != MARKER or own_marker:
                found[relative] = path.lstat().st_size if not path.is_symlink() else -1
    return dict(sorted(found.items()))


def _marker(folder: str | os.PathLike) -> dict | None:
    try:
        record = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("written_by") == "rejuv" else None


def write_marker(folder: Path, command: str, files: dict[str, int] | None = None) -> None:
    """Mark `folder` as an output of `rejuv <command>` holding `files` (default: everything in it now). The
    same files give the same bytes: outputs stay reproducible."""
    files = listing(folder) if files is None else dict(sorted(files.items()))
    text = json.dumps({"written_by": "rejuv", "command": command, "files": files}) + "\n"
    tmp = Path(folder) / f"{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, Path(folder) / MARKER)


def mark_written(folder: Path, command: str, paths: Iterable[str | os.PathLike]) -> None:
    """Add to the marker of an output written in place (the demo's folder, step by step) the files now at
    `paths` (files, or folders taken whole) inside it; only what rejuv wrote is ever added, so a user's file
    put there meanwhile stays theirs."""
    record = _marker(folder)
    files = dict(record.get("files") or {}) if record and record.get("command") == command else {}
    folder = Path(folder)
    for path in paths:
        path = Path(path)
        relative = path.relative_to(folder) if path.is_absolute() else path
        target = folder / relative
        if target.is_dir() and not target.is_symlink():
            files.update({f"{relative.as_posix()}/{k}": v for k, v in listing(target, own_marker=True).items()})
        elif target.is_file():
            files[relative.as_posix()] = target.stat().st_size
    write_marker(folder, command, files)


def written_by(folder: str | os.PathLike) -> str | None:
    """The command whose output `folder` is, from its marker; None when it has no (readable) marker."""
    record = _marker(folder)
    command = record.get("command") if record else None
    return command if isinstance(command, str) else None


def not_written_by_rejuv(out: Path) -> str | None:
    """What in `out` its marker does not list as rejuv wrote it (a file added at any depth, a file changed
    since, a link), described for the user; None when everything there is rejuv's."""
    record = _marker(out) or {}
    files = record.get("files")
    if not isinstance(files, dict):
        files = None
    for root, dirs, names in os.walk(out, onerror=_raise):
        dirs[:] = sorted(d for d in dirs if not _SCRATCH.match(d))
        for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root, name)
            relative = path.relative_to(out).as_posix()
            if relative == MARKER or _SCRATCH.match(name):
                continue
            if files is None:
                return (f"{relative}, and its {MARKER} marker lists no files (written by an older rejuv, which did "
                        "not record them)")
            if relative not in files:
                return f"{relative}, which rejuv did not write"
            size = path.lstat().st_size if not path.is_symlink() else -1
            if not stat.S_ISREG(path.lstat().st_mode) or files[relative] != size:
                return f"{relative}, changed since rejuv wrote it"
    return None


def _raise(exc: OSError) -> None:
    raise exc


def check_resumable(out: Path, command: str) -> None:
    """A resumed output (the demo's) is an empty folder or an earlier output of the same command; resuming
    removes nothing, so a user's file in it stays where it is."""
    if not any(out.iterdir()):
        return
    found = written_by(out)
    if found == command:
        return
    if found is not None:
        raise RejuvError(f"{out}: holds an output of `rejuv {found}`, not of `rejuv {command}`; choose another --out")
    raise RejuvError(f"{out}: holds files rejuv did not write (no {MARKER} marker); choose another --out, or "
                     "empty the folder yourself")


def check_replaceable(out: Path, command: str) -> None:
    """`--overwrite` replaces an empty folder or an earlier output of the same command that holds only what
    rejuv wrote there, nothing else."""
    check_resumable(out, command)
    try:
        foreign = not_written_by_rejuv(out)
    except OSError as exc:
        raise RejuvError(f"{out}: cannot be read through ({exc.strerror}: {exc.filename}), so --overwrite will not "
                         "replace it; choose another --out") from None
    if foreign is not None:
        raise RejuvError(f"{out}: holds {foreign}; --overwrite replaces only what rejuv wrote, so the folder is "
                         "kept: move that file out, or choose another --out")


def check_output_free(out: str | os.PathLike, overwrite: bool,
                      inputs: tuple[str | os.PathLike | None, ...] = (), command: str | None = None) -> None:
    """Fail early, before any work, if `out` exists (without overwrite, or with it when `out` is not an
    earlier output of `command`), or equals, contains or lies inside any input folder or file (after
    resolving symlinks): replacing the output must never touch an input or a user's files."""
    out = Path(out)
    out_resolved = resolved(out)
    for inp in inputs:
        if inp is None:
            continue
        inp_resolved = resolved(inp)
        if out_resolved == inp_resolved or inp_resolved in out_resolved.parents:
            raise RejuvError(f"{out}: the output may not be an input or lie inside one ({inp})")
        if out_resolved in inp_resolved.parents:
            raise RejuvError(f"{out}: the output may not contain an input ({inp}); choose another --out")
    if out.is_symlink():
        raise RejuvError(f"{out}: is a symbolic link; give the folder it points to ({out_resolved}) as --out")
    if out.exists() and not out.is_dir():
        raise RejuvError(f"{out}: exists and is not a folder")
    if out.exists() and not overwrite:
        raise RejuvError(f"{out}: output folder exists; pass --overwrite to replace it")
    if out.exists() and command is not None:
        check_replaceable(out, command)
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
def atomic_output_dir(out: str | os.PathLike, overwrite: bool = False, *, command: str) -> Iterator[Path]:
    """Yield a temporary sibling folder; mark it as an output of `rejuv <command>` and rename it to `out` only
    if the block succeeds. On any failure the temporary folder is removed; a write the system refuses
    (read-only, no space, no permission) is one line."""
    out = resolved(out)  # `--out .` has no name of its own to put a temporary sibling beside
    check_output_free(out, overwrite, command=command)
    tmp = out.parent / f"{_tmp_prefix(out)}{os.getpid()}"
    made = [p for p in reversed(out.parents) if not p.exists()]  # removed again if nothing is written
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
        write_marker(tmp, command)
        if out.exists() and not overwrite:  # appeared while we worked
            raise RejuvError(f"{out}: output folder appeared while writing; pass --overwrite to replace it")
        if out.exists():
            check_replaceable(out, command)
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
        _clean_up(tmp, made)
        if exc.errno not in _REFUSED_WRITES:
            raise
        raise RejuvError(f"{out}: cannot write the output: {_REFUSED_WRITES[exc.errno]} ({exc.filename}); "
                         "nothing was left behind") from None
    except BaseException:
        _clean_up(tmp, made)
        raise


def _clean_up(tmp: Path, made: list[Path]) -> None:
    """After a failed write: the temporary folder, and the parent folders this run created if still empty."""
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            folder.rmdir()


_HELD: dict[Path, int] = {}  # outputs this process holds the lock of, with how many claims


def _lock_path(out: Path) -> Path:
    """The lock of an output: in a folder of this user's under the temporary directory, named after the
    output's absolute path, so that it needs no folder beside the output and leaves nothing there. A folder
    of that name that is not this user's own plain folder (a file, a link, another user's) is refused: a lock
    there would not keep two runs apart."""
    folder = Path(tempfile.gettempdir()) / f"rejuv-locks-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RejuvError(f"{folder}: cannot create the folder of rejuv's output locks ({exc.strerror}); "
                         f"the lock of {out} is kept there") from None
    found = folder.lstat()
    if not stat.S_ISDIR(found.st_mode) or (hasattr(os, "getuid") and found.st_uid != os.getuid()):
        what = "a folder of another user" if stat.S_ISDIR(found.st_mode) else "not a folder"
        raise RejuvError(f"{folder}: is {what}, where rejuv keeps its output locks (the lock of {out}); remove it "
                         "and run again")
    return folder / (hashlib.sha256(str(out).encode()).hexdigest()[:32] + ".lock")


def _open_lock(path: Path, out: Path) -> int:
    """The lock file's descriptor; something else in its place (a folder, a link, a pipe) is refused."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0),
                     0o600)
    except OSError as exc:
        raise RejuvError(f"{path}: cannot be opened as the lock of {out} ({exc.strerror}); remove it and run "
                         "again") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RejuvError(f"{path}: is not a plain file, where rejuv keeps the lock of {out}; remove it and run again")
    return fd


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold `out` for this run: a second run on the same output is refused at once, naming the holder's pid.
    The lock is the system's (flock): a killed run leaves none behind. Nested claims of one process pass."""
    out = resolved(out)
    if out in _HELD or os.environ.get("RANK", "0") != "0":  # the main process of a distributed launch holds it
        _HELD[out] = _HELD.get(out, 0) + 1
        try:
            yield
        finally:
            _HELD[out] -= 1
            if not _HELD[out]:
                del _HELD[out]
        return
    path = _lock_path(out)
    while True:
        fd = _open_lock(path, out)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RejuvError(f"{out}: another rejuv run (pid {holder}) is writing this output; wait for it to "
                             "finish or choose another --out") from None
        try:  # the file may have been removed by the run that held it just before: lock the one in place
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[out] = 1
    try:
        yield
    finally:
        del _HELD[out]
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def check_inputs(cfg) -> list[str]:
    """Every input path `cfg` declares, checked to exist as what it is declared to be (a model argument given as
    a Hub ID is resolved to its local snapshot first: `rejuv.io.hub.resolve_models`); returns them."""
    from rejuv.io.inputs import resolve_models
    from rejuv.options import declared_paths, flag_of

    resolve_models(cfg)
    found = []
    for name, role, value in declared_paths(cfg):
        if role == "output":
            continue
        path, flag = Path(value), flag_of(type(cfg), name)
        if role == "checkpoint" and not path.is_dir():
            raise RejuvError(f"{value}: {'is not a folder' if path.exists() else 'no such folder'}; {flag} takes a "
                             "model folder (save_pretrained), a PEFT adapter folder, or a Hub ID (org/name[@rev])")
        if role == "file" and not path.is_file():
            raise RejuvError(f"{value}: {'is a folder' if path.exists() else 'no such file'}; {flag} takes a file")
        if role == "input" and not path.exists():
            raise RejuvError(f"{value}: no such file or folder ({flag})")
        found.append(value)
    return found


@contextlib.contextmanager
def claimed_output(cfg, command: str, resumable: bool = False) -> Iterator[Path]:
    """Before any work: every input `cfg` declares exists; its output is no input, holds none, and is free
    (absent, or replaceable by `rejuv <command>` under `--overwrite`; a `resumable` output may also be an
    earlier output of the same command, which the command continues); then the output is locked for the run.
    Yields the output path."""
    from rejuv.options import declared_paths

    inputs = tuple(check_inputs(cfg))
    outputs = [Path(value) for _, _, value in declared_paths(cfg, "output")]
    if len(outputs) != 1:
        raise RejuvError(f"{command}: expected one output folder, got {len(outputs)}")
    out = outputs[0]
    overwrite = bool(getattr(cfg, "overwrite", False))
    if resumable and out.is_dir() and any(out.iterdir()):
        check_resumable(out, command)
        check_output_free(out, True, inputs)
    else:
        check_output_free(out, overwrite, inputs, command)
    with output_lock(out):
        yield out
