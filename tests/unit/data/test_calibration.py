import json

import pytest

from rejuv.data.calibration import load_calibration
from rejuv.errors import RejuvError

from tiny import make_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_prompt_response_rows_as_plain_text(tmp_path, tok):
    calib = load_calibration(write(tmp_path / "c.jsonl", [{"prompt": "ab", "response": "cd"},
                                                          {"prompt": "a", "completion": "xyz"}]), tok,
                             chat_template="never")
    first = calib.samples[0]
    assert first.input_ids == tok("ab")["input_ids"] + tok("cd", add_special_tokens=False)["input_ids"] + [2]
    assert first.response_start == 3  # <s> a b
    assert list(first.predict_positions) == [2, 3, 4]
    assert calib.rows == 2 and len(calib.sha256) == 64 and not calib.chat_template


def test_text_prompts_go_through_the_chat_template_when_the_tokenizer_has_one(tmp_path, tok):
    calib = load_calibration(write(tmp_path / "c.jsonl", [{"prompt": "ab", "response": "cd"}]), tok)
    sample = calib.samples[0]
    assert calib.chat_template
    assert tok.decode(sample.input_ids[:sample.response_start]).replace(" ", "") == "<|user|>ab<|assistant|>"
    assert tok.decode(sample.input_ids[sample.response_start:]).replace(" ", "") == "cd</s>"


def test_text_rows_are_all_response(tmp_path, tok):
    sample = load_calibration(write(tmp_path / "c.jsonl", [{"text": "abc"}]), tok).samples[0]
    assert sample.input_ids == tok("abc")["input_ids"] + [2] and sample.response_start == 0
    assert list(sample.predict_positions) == [0, 1, 2, 3]


def test_chat_messages_use_the_template(tmp_path, tok):
    rows = [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}]
    sample = load_calibration(write(tmp_path / "c.jsonl", rows), tok).samples[0]
    text = tok.decode(sample.input_ids)
    assert text.replace(" ", "").endswith("4</s>")
    response = tok.decode(sample.input_ids[sample.response_start:]).replace(" ", "")
    assert response == "4</s>"


def test_sampling_is_seeded(tmp_path, tok):
    path = write(tmp_path / "c.jsonl", [{"prompt": f"p{i}", "response": "r"} for i in range(50)])
    def lines(seed):
        return [int(s.where.rsplit(":", 1)[1]) for s in load_calibration(path, tok, max_samples=10, seed=seed).samples]

    a, b, c = lines(1), lines(1), lines(2)
    assert a == b != c and len(a) == 10 and a == sorted(a)


@pytest.mark.parametrize("rows, message", [
    ([], "has no rows"),
    (["", "  "], "has no rows"),
    ([{"prompt": "a", "response": "b"}, "{not json"], r"c\.jsonl:2: not valid JSON"),
    ([{"prompt": "a"}], r"c\.jsonl:1: expected 'prompt'\+'completion' \(or 'response'\)"),
    ([{"prompt": "a", "response": 3}], r"c\.jsonl:1: 'prompt' and 'completion' \(or 'response'\) must both be"),
    ([[1, 2]], r"c\.jsonl:1: expected a JSON object"),
    ([{"prompt": "a", "response": ""}], r"c\.jsonl:1: empty response"),
    ([{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}], "assistant"),
    ([{"messages": "hi"}], "'messages' must be a list"),
])
def test_bad_rows_name_the_line(tmp_path, tok, rows, message):
    with pytest.raises(RejuvError, match=message):
        load_calibration(write(tmp_path / "c.jsonl", rows), tok)


def test_missing_file_and_template(tmp_path, tok):
    with pytest.raises(RejuvError, match="not found"):
        load_calibration(tmp_path / "none.jsonl", tok)
    plain = make_tokenizer()
    plain.chat_template = None
    rows = [{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}]
    with pytest.raises(RejuvError, match="chat messages need the chat template"):
        load_calibration(write(tmp_path / "c.jsonl", rows), plain)
    with pytest.raises(RejuvError, match="--chat-template always, but the tokenizer has no chat template"):
        load_calibration(write(tmp_path / "d.jsonl", [{"prompt": "a", "response": "b"}]), plain, chat_template="always")


def test_rows_longer_than_the_model_takes_are_cut_with_a_count(tmp_path, tok, rejuv_warnings):
    """~700-token responses on a model of 256 positions were once accepted without a word."""
    rows = [{"prompt": "1+1=", "response": "2" * n} for n in (10, 700, 400)]
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calib = load_calibration(path, tok, max_length=2048, positions=256)
    assert max(len(s.input_ids) for s in calib.samples) == 256
    assert rejuv_warnings == [f"{path}: 2 of 3 calibration sequences are longer than the model's 256 positions "
                              "and were cut to 256 tokens"]
    load_calibration(path, tok, max_length=128, positions=256)
    assert "longer than max_length 128" in rejuv_warnings[-1]
    path.write_text(json.dumps({"prompt": "1" * 300, "response": "2"}) + "\n")
    with pytest.raises(RejuvError, match=r"long\.jsonl:1: the prompt alone has \d+ tokens, beyond the model's 256 "
                                         "positions"):
        load_calibration(path, tok, positions=256)
