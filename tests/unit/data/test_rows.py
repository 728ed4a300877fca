import json

import pytest

from rejuv.data.rows import problem_records, read_records, sft_records
from rejuv.errors import RejuvError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_formats(tmp_path):
    assert sft_records(write(tmp_path / "a.jsonl", [{"prompt": "p", "response": "r"}])) == [
        {"prompt": "p", "completion": "r"}]
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert sft_records(write(tmp_path / "b.jsonl", [{"messages": chat}])) == [
        {"prompt": chat[:1], "completion": chat[1:]}]
    assert sft_records(write(tmp_path / "c.jsonl", [{"text": "t"}])) == [{"text": "t"}]


def test_parquet_is_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"problem": "1+1?", "answer": 2}, {"problem": "2+2?"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    assert problem_records(tmp_path / "p.parquet", need_answer=False) == [{"prompt": "1+1?", "answer": 2},
                                                                         {"prompt": "2+2?", "answer": None}]
    with pytest.raises(RejuvError, match=r"p\.parquet: row 2: missing the 'answer' column"):
        problem_records(tmp_path / "p.parquet")


@pytest.mark.parametrize("rows, message", [
    ([{"question": "q", "solution": "s"}], r"d\.jsonl:1: expected 'prompt'\+'completion'.*found columns \['question'"),
    ([{"prompt": "p", "completion": "c"}, {"text": "t"}], "mix formats"),
    ([{"messages": [{"role": "user", "content": "q"}]}], "at least two"),
    ([{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "r"}]}],
     "must end with the assistant's turn"),
    ([{"prompt": "p", "completion": ""}], r"d\.jsonl:1: empty response"),
    ([{"prompt": "p", "response": "  \n"}], r"d\.jsonl:1: empty response"),
    ([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}],
     r"d\.jsonl:1: empty response"),  # one emptiness rule for chat rows and prompt/response rows
    ([{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": " "}]}],
     r"d\.jsonl:1: empty response"),
    ([{"text": ""}], r"d\.jsonl:1: empty 'text'"),
    ([{"prompt": [{"role": "user", "content": "q"}], "completion": "a"}], "must both be text or both be chat"),
])
def test_sft_bad_rows(tmp_path, rows, message):
    with pytest.raises(RejuvError, match=message):
        sft_records(write(tmp_path / "d.jsonl", rows))


def test_problem_rows_and_errors(tmp_path):
    rows = problem_records(write(tmp_path / "e.jsonl", [
        {"problem": "1+1?", "answer": "2", "level": 1},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "answer": 3}]))
    assert rows[0] == {"prompt": "1+1?", "answer": "2", "level": 1}
    assert rows[1]["prompt"] == [{"role": "user", "content": "q"}] and rows[1]["answer"] == "3"
    with pytest.raises(RejuvError, match=r"f\.jsonl:1: missing the 'answer' column"):
        problem_records(write(tmp_path / "f.jsonl", [{"prompt": "p"}]))
    assert problem_records(tmp_path / "f.jsonl", need_answer=False) == [{"prompt": "p"}]
    with pytest.raises(RejuvError, match=r"g\.jsonl:1: expected a 'prompt' or 'problem'"):
        problem_records(write(tmp_path / "g.jsonl", [{"question": "q", "answer": 1}]))
    (tmp_path / "h.jsonl").write_text('{"prompt": "p"}\n{oops\n')
    with pytest.raises(RejuvError, match=r"h\.jsonl:2: not valid JSON"):
        read_records(tmp_path / "h.jsonl")
    with pytest.raises(RejuvError, match="not found"):
        read_records(tmp_path / "none.jsonl")


@pytest.mark.parametrize("answer, expected", [
    ("4", "4"), (4, "4"), (0.5, "0.5"), (["4", "four"], ["4", "four"]), ([4, "4.0"], ["4", "4.0"]),
])
def test_gold_answers_are_text_numbers_or_any_of_lists(tmp_path, answer, expected):
    rows = problem_records(write(tmp_path / "a.jsonl", [{"problem": "2+2?", "answer": answer}]))
    assert rows[0]["answer"] == expected


@pytest.mark.parametrize("answer, message", [
    ("", "empty 'answer'"), ("  ", "empty 'answer'"), ([], "'answer' is an empty list"), (["4", ""], "empty 'answer'"),
    (True, "must be text or a number"), ({"value": 4}, "must be text or a number"),
    ([["4"]], "must be text or a number"),
    (None, "missing the 'answer' column"),
])
def test_bad_gold_answers_are_refused_with_their_line(tmp_path, answer, message):
    path = write(tmp_path / "g.jsonl", [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": answer}])
    with pytest.raises(RejuvError, match=rf"g\.jsonl:2: .*{message}"):
        problem_records(path)
    (tmp_path / "n.jsonl").write_text('{"problem": "2+2?", "answer": NaN}\n')  # Python's json reads NaN
    with pytest.raises(RejuvError, match=r"n\.jsonl:1: 'answer' must be a finite number"):
        problem_records(tmp_path / "n.jsonl")


def test_an_empty_prompt_is_refused(tmp_path):
    with pytest.raises(RejuvError, match=r"p\.jsonl:1: empty prompt"):
        problem_records(write(tmp_path / "p.jsonl", [{"prompt": " ", "answer": "1"}]))
