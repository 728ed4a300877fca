"""The output folder: atomic, marked, never over a user's files, one run at a time."""

import os

import pytest

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


