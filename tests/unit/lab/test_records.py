"""Seed records: read back as untrusted input, pooled across sittings, and reported as the seeds run here."""

import copy
import json
from dataclasses import asdict, replace

import pytest

from rejuv.errors import RejuvError
from rejuv.lab.presets import PRESETS, world_of
from rejuv.lab.records import FORMAT, compare_records, made_elsewhere, pooled_records, read_record, write_record
from rejuv.lab.task import TOKEN_CLASSES

ARMS = ("modsft", "oversft", "oversft_fusion", "oversft_rejuv")
NUMERICS = {"threads": 2, "cpu_capability": "AVX512"}
SMALL = replace(PRESETS["small"], seeds=[0, 1, 2])
WORLD = world_of(asdict(SMALL), NUMERICS)


def _row(before: float, after: float) -> dict:
    return {"before": {"id": before, "ood": before, "overall": before},
            "after": {"id": after, "ood": after, "overall": after}, "gain": after - before,
            "calibration": {"before": None, "after": None},
            "rl": {k: [0.1, None, 0.2] for k in ("reward", "grad_norm", "update_l2", "kl", "entropy")},
            "reward_change": 0.1, "reward_last_change": 0.0, "update": None,
            "forecast": {"dead_share": 0.5, "prompts": 64, "group_size": 8, "samples_per_prompt": 8},
            "dead_measured": 0.4, "entropy": 0.1, "drift_rel": 0.2, "flagged": False}


def record(seed: int, fusion_lead: float = 0.05) -> dict:
    """A record as build_record writes one, with hand-made numbers: fusion ends RL `fusion_lead` ahead."""
    rows = {"modsft": _row(0.1, 0.3), "oversft": _row(0.2, 0.4), "oversft_fusion": _row(0.15, 0.4 + fusion_lead),
            "oversft_rejuv": _row(0.1, 0.4)}
    return {"format": FORMAT, "seed": seed, "world": WORLD, "arms": list(ARMS), "planner_settings": None,
            "rows": rows, "rules": {"alpha": {"chosen": 0.5, "rule": "alpha 0.5"},
                                    "rho": {"chosen": 0.001, "rule": "the largest rho", "candidates": {}},
                                    "rejuvenation": "alpha0.5-rho0.001"},
            "target_classes": dict.fromkeys(TOKEN_CLASSES, 1 / len(TOKEN_CLASSES)),
            "reset": {"rho": 0.001, "neurons_reset": 3, "neurons_total": 100, "by_layer": {"0": 3},
                      "by_kind": {"mlp": 3}},
            "planner": None, "params": 1000, "seconds": 60.0, "written_by": {"rejuv": "0", "commit": None}}


def _write(folder, rec) -> str:
    return str(write_record(folder, rec))


def test_a_written_record_reads_back_as_it_was(tmp_path):
    rec = record(1)
    assert read_record(_write(tmp_path, rec), WORLD, ARMS, SMALL) == rec


@pytest.mark.parametrize(("damage", "named"), [
    (lambda r: r["rows"]["oversft"]["after"].pop("ood"), "['rows']['oversft']['after']['ood']: missing"),
    (lambda r: r["rows"]["modsft"]["before"].update(overall=1.5), "['rows']['modsft']['before']['overall']: 1.5 is "
                                                                   "outside [0, 1]"),
    (lambda r: r["rows"].pop("oversft_rejuv"), "['rows']['oversft_rejuv']: missing"),
    (lambda r: r["rows"]["modsft"]["rl"]["reward"].append("x"), "['rows']['modsft']['rl']['reward'][3]: expected a "
                                                                 "number"),
    (lambda r: r["rows"]["modsft"].update(entropy=True), "['rows']['modsft']['entropy']: expected a number"),
    (lambda r: r["rules"]["rho"].pop("chosen"), "['rules']['rho']['chosen']: missing"),
    (lambda r: r["target_classes"].pop(TOKEN_CLASSES[0]), f"['target_classes'][{TOKEN_CLASSES[0]!r}]: missing"),
    (lambda r: r["reset"]["by_layer"].update({"1": 2.5}), "['reset']['by_layer']['1']: expected an integer"),
    (lambda r: r.update(format=FORMAT + 1), f"['format']: {FORMAT + 1}, but this rejuv reads format {FORMAT}"),
    (lambda r: r.update(seed="one"), "['seed']: expected an integer"),
])
def test_a_damaged_record_is_named_by_file_and_place(tmp_path, damage, named):
    rec = record(0)
    damage(rec)
    path = tmp_path / "seed-0.json"
    path.write_text(json.dumps(rec))
    with pytest.raises(RejuvError, match="seed-0.json: not a valid lab seed record: ") as found:
        read_record(path, WORLD, ARMS, SMALL)
    assert named in str(found.value)


def test_a_record_with_nan_or_cut_short_is_refused(tmp_path):
    path = tmp_path / "seed-0.json"
    path.write_text(json.dumps(record(0)).replace('"entropy": 0.1', '"entropy": NaN', 1))
    with pytest.raises(RejuvError, match="seed-0.json: not a readable lab seed record .*NaN"):
        read_record(path, WORLD, ARMS, SMALL)
    path.write_text(json.dumps(record(0))[:-20])
    with pytest.raises(RejuvError, match="seed-0.json: not a readable lab seed record"):
        read_record(path, WORLD, ARMS, SMALL)


def test_a_record_of_another_world_or_other_arms_does_not_pool(tmp_path):
    other = copy.deepcopy(record(0))
    other["world"]["settings"]["rl_steps"] = 250
    with pytest.raises(RejuvError, match=r"seed 0 was run in another world \(settings.rl_steps differs"):
        read_record(_write(tmp_path, other), WORLD, ARMS, SMALL)
    other = copy.deepcopy(record(0))  # another machine's numerics: pooled, and said to be made elsewhere
    other["world"]["numerics"]["cpu_capability"] = "AVX2"
    found = read_record(_write(tmp_path, other), WORLD, ARMS, SMALL)
    assert made_elsewhere(found, WORLD) == {"threads": 2, "cpu_capability": "AVX2"}
    assert made_elsewhere(record(0), WORLD) is None
    other["world"]["numerics"] = "x"
    with pytest.raises(RejuvError, match=r"\['world'\]\['numerics'\]: expected an object"):
        read_record(_write(tmp_path, other), WORLD, ARMS, SMALL)
    with pytest.raises(RejuvError, match="has the arms modsft,oversft,oversft_fusion,oversft_rejuv, this run "
                                         "modsft,oversft"):
        read_record(_write(tmp_path, record(0)), WORLD, ("modsft", "oversft"), SMALL)


def test_the_planner_preset_needs_records_with_its_check(tmp_path):
    planner = replace(PRESETS["planner"], seeds=[0])
    with pytest.raises(RejuvError, match="seed 0 has no planner check with this preset's settings"):
        read_record(_write(tmp_path, record(0)), world_of(asdict(planner), NUMERICS), ARMS, planner)
    rec = {**record(0), "world": world_of(asdict(planner), NUMERICS),
           "planner_settings": {k: getattr(planner, k) for k in ("plan_epochs", "plan_probe_steps", "plan_alphas",
                                                                 "plan_rhos")},
           "planner": {"skipped": "no reward signal"}}
    assert read_record(_write(tmp_path, rec), rec["world"], ARMS, planner)["planner"] == {"skipped": "no reward signal"}
    rec["planner"] = {"field": {}, "epochs": ["epoch-1"]}
    with pytest.raises(RejuvError, match=r"\['planner'\]\['post_rl'\]: missing"):
        read_record(_write(tmp_path, rec), rec["world"], ARMS, planner)


def test_pooled_records_from_folders_and_demo_outputs(tmp_path):
    for seed in (0, 1, 5):
        _write(tmp_path / "sitting" / "records", record(seed))
    pooled = pooled_records([str(tmp_path / "sitting")], WORLD, ARMS, SMALL)  # a demo output: its records/
    assert sorted(pooled) == [0, 1]  # seed 5 is not one this run names
    assert pooled[1][1].endswith("sitting/records/seed-1.json")
    _write(tmp_path / "elsewhere", record(1))
    with pytest.raises(RejuvError, match=r"elsewhere/seed-1.json: seed 1 is pooled twice \(also .*sitting"):
        pooled_records([str(tmp_path / "sitting"), str(tmp_path / "elsewhere")], WORLD, ARMS, SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RejuvError, match=r"empty: no seed records \(seed-N.json\) in it \(--pool\)"):
        pooled_records([str(tmp_path / "empty")], WORLD, ARMS, SMALL)


def test_a_report_over_pooled_records_alone(tmp_path):
    """Three seeds from records only (nothing run here): the claims are judged over them, and the report says
    where each seed came from."""
    from rejuv.lab.report import write_report

    records = {s: record(s, lead) for s, lead in zip((0, 1, 2), (0.05, 0.06, 0.07), strict=True)}
    sources = {s: f"/elsewhere/seed-{s}.json" for s in records}
    report = write_report(tmp_path, SMALL, ARMS, "small", 0.0, NUMERICS, records, sources)
    fusion = next(c for c in report["claims"] if c["claim"].startswith("Fusion + RL > OverSFT + RL"))
    assert fusion["verdict"] == "held" and fusion["value"]["mean"] == pytest.approx(0.06)
    assert fusion["differences"] == pytest.approx({"0": 0.05, "1": 0.06, "2": 0.07})
    assert report["records"]["2"] == {"from": "/elsewhere/seed-2.json", "seconds": 60.0,
                                      "written_by": {"rejuv": "0", "commit": None}, "numerics": NUMERICS}
    provenance = report["provenance"]
    assert provenance["ran_here"] == [] and provenance["read_from_records"] == [0, 1, 2]
    assert provenance["lines"] == ["Read from committed records: seeds 0-2 (/elsewhere; written at 0)."]
    assert report["rules"]["0"]["rho"]["chosen"] == 0.001 and report["reset"]["1"]["neurons_reset"] == 3
    page = (tmp_path / "report.html").read_text()
    assert "/elsewhere/seed-2.json" in page
    table = (tmp_path / "table.md").read_text()  # every table of the page, in Markdown
    assert "| 1 | 10.0 → 30.0 | 20.0 → 40.0 | 15.0 → 46.0 | 10.0 → 40.0 |" in table
    assert "| Fusion + RL > OverSFT + RL" in table and "| 2 | /elsewhere/seed-2.json | 1.0 | 0 | 2 threads, AVX512 |" \
        in table and table.startswith("Where these numbers come from:\n- Read from committed records")


def test_a_demo_never_pools_from_inside_its_own_output(tmp_path):
    from rejuv.io.output import write_marker
    from rejuv.lab.demo import DemoConfig, run_demo

    _write(tmp_path / "demo" / "records", record(0))
    write_marker(tmp_path / "demo", "demo")  # an earlier demo's output, which this one would resume
    with pytest.raises(RejuvError, match="records") as found:
        run_demo(DemoConfig("smoke", out=str(tmp_path / "demo"), pool=[str(tmp_path / "demo" / "records")]))
    assert "\n" not in str(found.value)
    with pytest.raises(RejuvError, match=r"no such file or folder \(--pool\)"):
        run_demo(DemoConfig("smoke", out=str(tmp_path / "other"), pool=[str(tmp_path / "nowhere")]))


def test_compare_records_names_every_value_a_rerun_changed():
    committed, here = record(3), copy.deepcopy(record(3))
    here["seconds"], here["written_by"] = 999.0, {"rejuv": "1", "commit": "abc"}  # not results
    here["world"] = {"settings": {}, "numerics": {"threads": 8}}
    here["rows"]["modsft"]["forecast"]["data"] = "/elsewhere/rl.jsonl"  # a path of the folder it ran in
    assert compare_records(committed, here) == []
    here["rows"]["oversft"]["after"]["ood"] = 0.41
    here["rules"]["alpha"]["chosen"] = 0.6
    here["rows"]["modsft"]["rl"]["reward"][1] = 0.3
    found = {d["place"]: d for d in compare_records(committed, here)}
    assert set(found) == {"['rows']['oversft']['after']['ood']", "['rules']['alpha']['chosen']",
                          "['rows']['modsft']['rl']['reward'][1]"}
    assert found["['rows']['oversft']['after']['ood']"]["difference"] == pytest.approx(0.01)
    assert found["['rows']['modsft']['rl']['reward'][1]"] == {"place": "['rows']['modsft']['rl']['reward'][1]",
                                                              "committed": None, "here": 0.3}
