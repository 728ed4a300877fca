"""The lab's task: disjoint splits, every answer form graded correct, token classes of a solution."""

import json
import random

from rejuv.evaluation.grading import grade_many
from rejuv.lab.task import (
    TOKEN_CLASSES,
    TaskSpec,
    char_classes,
    forms,
    pretrain_pool,
    pretraining_texts,
    splits,
    teacher,
    write_task_files,
)
from rejuv.lab.tokenizer import make_char_tokenizer
from rejuv.lab.world import WORDS


def test_task_splits_are_disjoint_and_every_form_grades_correct(tmp_path):
    spec = TaskSpec(max=12, sft_max=8, pretrain_pool=40)
    a = write_task_files(tmp_path / "a", spec, seed=3, sft_rows=20, rl_rows=10, eval_rows=10, calib_rows=5)
    b = write_task_files(tmp_path / "b", spec, seed=3, sft_rows=20, rl_rows=10, eval_rows=10, calib_rows=5)
    assert all(a[k].read_text() == b[k].read_text() for k in a)
    sp = splits(spec, 3, {"sft": 20, "calib": 5, "rl": 10, "id": 10, "ood": 10})
    keys = {name: {tuple(sorted(t)) for t in rows} for name, rows in sp.items()}
    pool = set(pretrain_pool(spec))
    for name, k in keys.items():  # decontaminated: no problem in two splits or in pre-training
        assert not k & pool and all(not k & other for n, other in keys.items() if n != name)
    assert max(max(t) for t in sp["sft"] + sp["calib"]) <= 8 and max(max(t) for t in sp["id"]) <= 12
    ood = [json.loads(x) for x in a["ood"].read_text().splitlines()]
    assert all(row["problem"].startswith("what is ") for row in ood)  # a phrasing SFT never shows
    sft = [json.loads(x) for x in a["sft"].read_text().splitlines()]
    assert all(row["prompt"].startswith("compute ") and "\\boxed{" in row["completion"] for row in sft)
    every = forms(12, 3, 7)
    assert len(set(every)) == 24 and teacher(12, 3, 7) in every and teacher(3, 12, 7) == teacher(12, 3, 7)
    assert grade_many(["22"] * len(every), every) == [True] * len(every)
    texts = pretraining_texts(spec, random.Random(0), 400)
    assert any("boxed" in t["text"] for t in texts) and any(t["text"].startswith("add ") for t in texts)
    tok = make_char_tokenizer(chat_template=None, words=WORDS)
    ids = tok(teacher(3, 4, 5))["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == teacher(3, 4, 5)
    assert tok.convert_tokens_to_ids("\\boxed{") in ids  # the format is one token


def test_token_classes_of_a_worked_solution():
    text = "12+3=15; 15+7=22. \\boxed{22}"
    classes = char_classes(text)
    assert [classes[i] for i in (0, 2, 3, 5, 7, 9, 14)] == ["operand digits", "operators", "operand digits",
                                                            "result digits", "connectives", "operand digits",
                                                            "result digits"]
    assert classes[text.index("\\")] == "format" and classes[text.index("{") + 1] == "result digits"
    assert set(classes) <= set(TOKEN_CLASSES)


