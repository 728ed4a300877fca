"""The output folder: atomic, marked, never over a user's files, one run at a time."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rejuv.errors import RejuvError
from rejuv.io.output import atomic_output_dir, write_marker


def test_atomic_output_dir_renames_only_on_success(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError):
        with atomic_output_dir(out, command="test") as tmp:
            (tmp / "partial").write_text("x")
            raise ValueError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_output_dir(out, command="test") as tmp:
        (tmp / "done").write_text("x")
    assert (out / "done").exists()
    with pytest.raises(RejuvError, match="overwrite"):
        with atomic_output_dir(out, command="test"):
            pass
    with atomic_output_dir(out, overwrite=True, command="test") as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == [".rejuv-output", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_temporary_folder_of_a_killed_run_is_cleared(tmp_path):
    dead_pid = 2**22 + 12345  # above the default pid_max, so no such process
    stale = tmp_path / f".out.rejuv-tmp-{dead_pid}"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    with atomic_output_dir(tmp_path / "out", command="test") as tmp:
        (tmp / "ok").write_text("1")
    assert not stale.exists() and (tmp_path / "out" / "ok").exists()
    assert os.getpid() > 0


def test_a_refused_write_is_one_line_and_leaves_nothing(tmp_path):
    import errno

    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("kept")
    write_marker(out, "test")  # an earlier output of the same command: --overwrite may replace it
    for code, words in ((errno.ENOSPC, "the disk is full"), (errno.EROFS, "the file system is read-only")):
        with pytest.raises(RejuvError, match=f"cannot write the output: {words}"):
            with atomic_output_dir(out, overwrite=True, command="test") as tmp:
                (tmp / "part").write_text("x")
                raise OSError(code, os.strerror(code), str(tmp / "part"))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "old").read_text() == "kept"
    with pytest.raises(FileNotFoundError):  # other failures are not disguised as write errors
        with atomic_output_dir(tmp_path / "other", command="test"):
            open(tmp_path / "missing")  # noqa: SIM115
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_long_output_names_and_the_current_folder_work(tmp_path, monkeypatch):
    long = tmp_path / ("x" * 240)
    with atomic_output_dir(long, command="test") as tmp:
        (tmp / "a").write_text("1")
    assert (long / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == [long.name]
    here = tmp_path / "here"
    here.mkdir()
    write_marker(here, "test")
    monkeypatch.chdir(here)
    with atomic_output_dir(".", overwrite=True, command="test") as tmp:
        (tmp / "b").write_text("2")
    assert (here / "b").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([long.name, "here"])  # no leftover sibling


def test_a_second_run_on_an_output_being_written_is_refused_naming_the_holder(tmp_path):
    import subprocess
    import sys

    from rejuv.io.output import output_lock

    out = tmp_path / "out"
    code = ("import sys, time\nfrom rejuv.io.output import output_lock\nwith output_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RejuvError, match=rf"another rejuv run \(pid {holder.pid}\) is writing this output"):
            with output_lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out), output_lock(out):  # a killed holder leaves no lock; one process may nest its claims
        pass
    assert list(tmp_path.iterdir()) == []  # nothing is left beside the output




# -- what --overwrite may replace: only what the marker lists, as rejuv wrote it --------------------------------

def _written(out, files: dict[str, str], command="test"):
    with atomic_output_dir(out, overwrite=out.exists(), command=command) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)


def test_the_marker_lists_every_file_rejuv_wrote_with_its_size(tmp_path):
    import json

    _written(tmp_path / "out", {"a.txt": "12", "sub/b.bin": "12345"})
    marker = json.loads((tmp_path / "out" / ".rejuv-output").read_text())
    assert marker == {"written_by": "rejuv", "command": "test", "files": {"a.txt": 2, "sub/b.bin": 5}}


@pytest.mark.parametrize("change", ["a file beside", "a file in a subfolder", "a file made longer", "a link",
                                    "a file where a folder was"])
def test_overwrite_keeps_an_output_holding_anything_rejuv_did_not_write(tmp_path, change):
    out = tmp_path / "out"
    _written(out, {"a.txt": "12", "sub/b.bin": "12345"})
    if change == "a file beside":
        (out / "notes.txt").write_text("mine")
    elif change == "a file in a subfolder":
        (out / "sub" / "analysis").mkdir()
        (out / "sub" / "analysis" / "notes.md").write_text("mine")
    elif change == "a file made longer":
        with open(out / "a.txt", "a") as f:
            f.write(" and my note")
    elif change == "a link":
        (out / "data").symlink_to(tmp_path)
    else:
        (out / "sub" / "b.bin").unlink()
        (out / "sub" / "b.bin").mkdir()
        (out / "sub" / "b.bin" / "x").write_text("mine")
    before = sorted(str(p) for p in out.rglob("*"))
    with pytest.raises(RejuvError, match=r"--overwrite replaces only what rejuv wrote, so the folder is kept"):
        _written(out, {"new.txt": "x"})
    assert sorted(str(p) for p in out.rglob("*")) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_added_while_the_run_works_is_seen_before_the_old_output_is_replaced(tmp_path):
    out = tmp_path / "out"
    _written(out, {"a.txt": "1"})
    with pytest.raises(RejuvError, match="notes.txt, which rejuv did not write"):
        with atomic_output_dir(out, overwrite=True, command="test") as tmp:
            (tmp / "b.txt").write_text("2")
            (out / "notes.txt").write_text("mine, written during the run")
    assert (out / "notes.txt").read_text() == "mine, written during the run" and (out / "a.txt").exists()


def test_what_rejuv_left_while_working_and_removed_files_do_not_keep_an_output(tmp_path):
    out = tmp_path / "out"
    _written(out, {"a.txt": "1", "step/b.txt": "2"})
    (out / "a.txt").unlink()  # a user removed a file: nothing of theirs is lost by replacing the rest
    (out / ".step.rejuv-tmp-4194999").mkdir()  # a killed step's temporary folder, inside a demo's tree
    (out / ".step.rejuv-tmp-4194999" / "half").write_text("x")
    _written(out, {"new.txt": "x"})
    assert sorted(p.name for p in out.iterdir()) == [".rejuv-output", "new.txt"]


def test_an_output_of_an_older_rejuv_whose_marker_lists_no_files_is_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("x")
    (out / ".rejuv-output").write_text('{"written_by": "rejuv", "command": "test"}\n')
    with pytest.raises(RejuvError, match="model.safetensors, and its .rejuv-output marker lists no files"):
        _written(out, {"new.txt": "x"})
    assert (out / "model.safetensors").exists()


@given(tree=st.dictionaries(st.sampled_from(["a", "b/c", "b/d", "e/f/g"]), st.text(max_size=3), min_size=1),
       added=st.dictionaries(st.sampled_from(["a", "b/c", "x", "b/x", "e/f/x", "e/y"]), st.text(max_size=3)))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_overwrite_never_loses_what_a_user_put_in_an_output(tmp_path_factory, tree, added):
    """Whatever an output held and whatever a user wrote into it afterwards (new files, rewritten files): either
    every byte a user wrote is still there, or it was rejuv's own bytes that were replaced."""
    import uuid

    out = tmp_path_factory.mktemp("o") / uuid.uuid4().hex
    _written(out, tree)
    users = {}
    for name, text in added.items():
        path = out / name
        if any(parent.is_file() for parent in path.parents if out in parent.parents):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        users[name] = text
    changed = {n for n, t in users.items() if n not in tree or len(t.encode()) != len(tree[n].encode())}
    try:
        _written(out, {"new": "1"})
    except RejuvError as exc:
        assert changed and "so the folder is kept" in str(exc)
        assert all((out / n).read_bytes() == t.encode() for n, t in users.items())
        return
    assert not changed  # replaced: only files rejuv wrote, of the sizes it wrote them (same size: an edit unseen)


def test_a_lock_folder_or_file_replaced_by_something_else_is_one_line(tmp_path, monkeypatch):
    from rejuv.io.output import _lock_path, output_lock

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    out = tmp_path / "out"
    locks = tmp_path / f"rejuv-locks-{os.getuid()}"
    locks.write_text("a file where the lock folder belongs")
    with pytest.raises(RejuvError, match=r"rejuv-locks-\d+: is not a folder, where rejuv keeps its output locks"):
        with output_lock(out):
            pass
    locks.unlink()
    locks.symlink_to(tmp_path)
    with pytest.raises(RejuvError, match="is not a folder"):
        with output_lock(out):
            pass
    locks.unlink()
    lock = _lock_path(out.resolve())
    lock.mkdir()
    with pytest.raises(RejuvError, match=r"\.lock: cannot be opened as the lock of"):
        with output_lock(out):
            pass
    lock.rmdir()
    lock.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RejuvError, match=r"\.lock: cannot be opened as the lock of"):
        with output_lock(out):
            pass
    assert not (tmp_path / "elsewhere").exists()  # a planted link is never followed
    lock.unlink()
    os.mkfifo(lock)
    with pytest.raises(RejuvError, match=r"\.lock: is not a plain file"):
        with output_lock(out):
            pass
    lock.unlink()
    with output_lock(out):
        pass


def test_an_output_through_a_loop_of_links_is_one_line(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for out in (tmp_path / "a", tmp_path / "a" / "x"):
        with pytest.raises(RejuvError, match="cannot be followed to a folder .*a loop of symbolic links"):
            with atomic_output_dir(out, command="test"):
                pass
