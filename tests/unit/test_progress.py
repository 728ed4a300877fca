"""Progress for logs: off a terminal, plain lines with done/total, rate and time left."""

from rejuv.progress import LogLines, progress_bar


def test_off_a_terminal_progress_is_log_lines(capsys, monkeypatch):
    monkeypatch.setenv("REJUV_PROGRESS_EVERY", "0")
    with progress_bar(True, 4, "attribution", "sample") as bar:
        assert isinstance(bar, LogLines)
        for _ in range(4):
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("attribution: 1/4 sample (25%)") and "sample/s" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("attribution: 4/4 sample (100%)")


def test_lines_are_spaced_and_quiet_passes_say_nothing(capsys, monkeypatch):
    monkeypatch.setenv("REJUV_PROGRESS_EVERY", "30")
    with progress_bar(True, 100, "writing", "B", unit_scale=True, unit_divisor=1024) as bar:
        bar.update(50)
    with progress_bar(False, 100, "hidden") as bar:
        bar.update(100)
    assert capsys.readouterr().err == ""  # a pass shorter than the interval, and --no-progress, print nothing
    clock = iter([0.0, 10.0, 31.0, 40.0, 62.0, 70.0, 75.0, 80.0, 101.0])
    monkeypatch.setattr("rejuv.progress.time.monotonic", lambda: next(clock))
    monkeypatch.setattr("rejuv.progress._last_line", [0.0])
    bar = LogLines(3 * 1024**2, "writing", "B", every=30, unit_scale=True)
    for _ in range(4):
        bar.update(512 * 1024)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["writing: 1.0 Mi/3.0 Mi B (33%), 33.0 Ki B/s, elapsed 0m31s, left 1m02s",
                     "writing: 2.0 Mi/3.0 Mi B (67%), 33.0 Ki B/s, elapsed 1m02s, left 0m31s"]  # closing adds nothing
    short = LogLines(10, "entropy", "sample", every=30)  # starts at 75 s, 5 s after the last line
    short.update(4)  # 80 s: 10 s since the last line, nothing
    short.update(6)  # 101 s: 31 s since the last line of any pass
    assert capsys.readouterr().err == "entropy: 10/10 sample (100%), 0.385 sample/s, elapsed 0m26s, left 0m00s\n"


def test_the_last_line_of_a_pass_is_written_once(capsys, monkeypatch):
    monkeypatch.setenv("REJUV_PROGRESS_EVERY", "0")
    with progress_bar(True, 2, "entropy", "sample") as bar:
        bar.update(2)  # the line at 2/2 is the last one: closing the pass repeats nothing
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_without_progress_a_long_pass_still_says_where_it_is(capsys, monkeypatch):
    """`apply --no-progress` printed nothing in a 24-minute run: it could not be told from a hang."""
    monkeypatch.setenv("REJUV_PROGRESS_EVERY", "30")  # --no-progress: a line every 5 min, and at the end of a
    clock, real = iter([0.0, 100.0, 301.0, 400.0, 1440.0]), __import__("time").monotonic  # pass of a minute or more
    monkeypatch.setattr("rejuv.progress.time.monotonic", lambda: next(clock))
    monkeypatch.setattr("rejuv.progress._last_line", [0.0])
    bar = progress_bar(False, 3, "attribution", "sample")
    bar.update(1)  # 100 s
    bar.update(1)  # 301 s: five minutes since the last line
    bar.update(1)  # 400 s
    bar.close()  # 1440 s
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["attribution: 2/3 sample (67%)", "attribution: 3/3 sample (100%)"]
    monkeypatch.setattr("rejuv.progress.time.monotonic", real)
    monkeypatch.setenv("REJUV_PROGRESS_EVERY", "0")  # (the tests' way to see every pass's line)
    with progress_bar(False, 1, "writing", "B") as bar:
        bar.update(1)
    assert capsys.readouterr().err.startswith("writing: 1/1 B (100%)")


def test_a_caller_that_says_where_it_stands_can_silence_every_pass(capsys, monkeypatch):
    from rejuv.progress import silenced

    monkeypatch.setenv("REJUV_PROGRESS_EVERY", "0")
    with silenced():
        for enabled in (True, False):
            with progress_bar(enabled, 2, "eval", "problem") as bar:
                bar.update(2)
    assert capsys.readouterr().err == ""
