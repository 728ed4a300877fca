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
                     "writing: 2.0 Mi/3.0 Mi B (67%), 33.0 Ki B/s, elapsed 1m02s, left 0m31s",
                     "writing: 2.0 Mi/3.0 Mi B (67%), 29.3 Ki B/s, elapsed 1m10s, left 0m35s"]
    short = LogLines(10, "entropy", "sample", every=30)  # starts at 75 s, 5 s after the last line
    short.update(4)  # 80 s: 10 s since the last line, nothing
    short.update(6)  # 101 s: 31 s since the last line of any pass
    assert capsys.readouterr().err == "entropy: 10/10 sample (100%), 0.385 sample/s, elapsed 0m26s, left 0m00s\n"
