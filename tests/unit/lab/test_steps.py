"""The demo's steps: run once, timed, and the log says step i of N and the time left from measured times."""

import json

from rejuv.lab.steps import Steps


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_steps_count_time_and_estimate_from_the_seed_before(tmp_path):
    clock, lines = Clock(), []
    steps = Steps(seeds=3, clock=clock, echo=lines.append)

    def work(seconds):
        def run():
            clock.now += seconds
        return run

    steps(tmp_path, tmp_path / "base", "base", work(60))
    for seed in range(3):
        steps.begin_seed(seed)
        steps(tmp_path, tmp_path / f"a{seed}", f"seed {seed}: a", work(120))
        steps(tmp_path, tmp_path / f"b{seed}", f"seed {seed}: b", work(240 + 120 * seed))
    assert lines[0] == "base"  # before the seeds: no step count
    assert lines[1] == "seed 0: a  [step 1 of the seed; 1 min in]"  # nothing measured yet: no guess
    assert lines[2] == "seed 0: b  [step 2 of the seed; 3 min in]"
    # seed 1: a and b of this seed and of seed 2 left, as measured on seed 0: 2 × (2 + 4) min
    assert lines[3] == "seed 1: a  [step 1 of 2 of the seed; 7 min in; about 12 min left]"
    # seed 2, step b: itself, the mean of seed 0's and seed 1's b (4 and 6 min)
    assert lines[6] == "seed 2: b  [step 2 of 2 of the seed; 17 min in; about 5 min left]"
    timings = [json.loads(line) for line in (tmp_path / "timings.jsonl").read_text().splitlines()]
    assert [t["seconds"] for t in timings] == [60, 120, 240, 120, 360, 120, 480]


def test_a_finished_step_is_skipped_and_unmeasured_positions_give_no_estimate(tmp_path):
    clock, lines, ran = Clock(), [], []
    Steps(seeds=2, clock=clock, echo=lambda _: None)(tmp_path, tmp_path / "a0", "seed 0: a",
                                                      lambda: (tmp_path / "a0").mkdir())  # an earlier run's step
    steps = Steps(seeds=2, clock=clock, echo=lines.append)
    steps.begin_seed(0)
    steps(tmp_path, tmp_path / "a0", "seed 0: a", lambda: ran.append("a0"))
    steps(tmp_path, tmp_path / "b0", "seed 0: b", lambda: ran.append("b0"))
    steps.begin_seed(1)
    steps(tmp_path, tmp_path / "a1", "seed 1: a", lambda: ran.append("a1"))
    assert ran == ["b0", "a1"]
    assert lines[-1] == "seed 1: a  [step 1 of 2 of the seed; 0 min in]"  # step a never measured: no estimate
    assert steps.names == {"seed 0: a", "seed 0: b", "seed 1: a"}  # the reused step is this run's too


def test_a_step_reusing_a_folder_of_this_run_counts_as_free(tmp_path):
    """The planner's full run from a start that is an arm's reuses the arm's run (same folder): that
    position costs nothing on every seed, and must not hide the estimate."""
    clock, lines = Clock(), []
    steps = Steps(seeds=2, clock=clock, echo=lines.append)

    def work(folder):
        def run():
            clock.now += 60
            folder.mkdir()
        return run

    for seed in range(2):
        steps.begin_seed(seed)
        rl = tmp_path / f"rl{seed}"
        steps(tmp_path, rl, f"seed {seed}: rl", work(rl))
        steps(tmp_path, rl, f"seed {seed}: planner's rl", work(rl))  # the same folder: reused
        steps(tmp_path, tmp_path / f"ev{seed}", f"seed {seed}: eval", work(tmp_path / f"ev{seed}"))
    assert lines[2] == "seed 1: rl  [step 1 of 3 of the seed; 2 min in; about 2 min left]"
    assert lines[3] == "seed 1: eval  [step 3 of 3 of the seed; 3 min in; about 1 min left]"


def test_a_step_folder_unlike_its_record_is_set_aside_and_the_step_runs_again(tmp_path):
    """Saved state is untrusted: a step's output edited, cut or never recorded (a killed run) is not reused."""
    lines, ran = [], []

    def work(folder, text):
        def run():
            ran.append(folder.name)
            folder.mkdir()
            (folder / "eval.json").write_text(text)
        return run

    steps = Steps(seeds=1, clock=Clock(), echo=lines.append)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (a, b):
        steps(tmp_path, folder, folder.name, work(folder, '{"results": []}'))
    c.mkdir()  # a folder no step recorded (a run killed before the record was written)
    (b / "eval.json").write_text('{"results": [')  # cut
    again = Steps(seeds=1, clock=Clock(), echo=lines.append)
    for folder in (a, b, c):
        again(tmp_path, folder, folder.name, work(folder, '{"results": [1]}'))
    assert ran == ["a", "b", "b", "c"]  # a was intact and reused; b and c ran again
    assert (b / "eval.json").read_text() == '{"results": [1]}'
    assert (tmp_path / "b.damaged-1" / "eval.json").read_text() == '{"results": ['  # set aside, not deleted
    assert (tmp_path / "c.damaged-1").is_dir()
    assert any("eval.json differs from what its step wrote" in line and "b.damaged-1" in line for line in lines)
    assert any("no record of the step" in line for line in lines)


def test_a_step_may_record_the_folder_its_proof_lies_in(tmp_path):
    """The rules step's proof is rules.json; the candidates beside it are what later steps and the report read."""
    lines, ran = [], []
    folder = tmp_path / "rules"

    def work():
        ran.append(1)
        folder.mkdir(exist_ok=True)
        (folder / "candidate.json").write_text('{"rho": 0.01}')
        (folder / "rules.json").write_text("{}")

    Steps(1, clock=Clock(), echo=lines.append)(tmp_path, folder / "rules.json", "rules", work, covers=folder)
    Steps(1, clock=Clock(), echo=lines.append)(tmp_path, folder / "rules.json", "rules", work, covers=folder)
    assert ran == [1]
    (folder / "candidate.json").write_text('{"rho": 0.5}')  # a candidate edited: the whole step is redone
    Steps(1, clock=Clock(), echo=lines.append)(tmp_path, folder / "rules.json", "rules", work, covers=folder)
    assert ran == [1, 1] and (tmp_path / "rules.damaged-1" / "candidate.json").read_text() == '{"rho": 0.5}'


def test_before_a_seed_is_measured_the_time_left_comes_from_the_committed_records_time(tmp_path):
    """`make demo` runs one seed: its time left is the committed record's seed time less this seed's elapsed,
    said to be that; past it, the log says this machine is slower instead of guessing."""
    clock, lines = Clock(), []
    steps = Steps(seeds=1, clock=clock, echo=lines.append, expected_seed_seconds=600)

    def work(seconds):
        def run():
            clock.now += seconds
        return run

    steps(tmp_path, tmp_path / "base", "base", work(120))
    steps.begin_seed(0)
    steps(tmp_path, tmp_path / "a", "seed 4: a", work(300))
    steps(tmp_path, tmp_path / "b", "seed 4: b", work(400))
    steps(tmp_path, tmp_path / "c", "seed 4: c", work(10))
    assert lines[0] == "base  [then about 10 min for 1 seed(s), by the committed record's time]"
    assert lines[1] == "seed 4: a  [step 1 of the seed; 2 min in; about 10 min left, by the committed record's time]"
    assert lines[2] == "seed 4: b  [step 2 of the seed; 7 min in; about 5 min left, by the committed record's time]"
    assert lines[3] == ("seed 4: c  [step 3 of the seed; 14 min in; past the committed record's 10 min for the seed: "
                        "this machine is slower]")
