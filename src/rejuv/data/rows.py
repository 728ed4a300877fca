"""Local datasets for training, calibration and evaluation: JSONL or parquet, validated with clear errors.

Accepted rows (the formats TRL and verl users already have):
- SFT and calibration: `prompt` + `completion` (or `response`), both text or
  both chat messages; chat `messages` whose last turn is the assistant's (the
  response); or plain `text` (language modelling: every token is a response token).
- RL and evaluation: `prompt` (text or chat messages) or `problem`, plus
  `answer` (the gold final answer); chat `messages` ending with an assistant
  turn are used up to that turn as the prompt.
- A gold answer is text or a number (a number is graded as its text), never
  empty; or a non-empty list of them, meaning *any of*: a completion is right
  when its answer matches one of them (`eval`, the rewards of `rl` and `plan`,
  and `export-verl`'s reward all read it so).
- A response is never empty (nor only white space), whatever the row's format.
How a row becomes token ids is `rejuv.data.prompts`' rule, the same for every command.
Every error names the file and the line (JSONL) or row (parquet).
"""

from __future__ import annotations

import math
from pathlib import Path

from rejuv.errors import RejuvError
from rejuv.io.jsonl import numbered_jsonl


def read_rows(path: str | Path, what: str = "data") -> list[tuple[str, dict]]:
    """(where, row) for every row of a JSONL or parquet file; `where` is `file:line` or `file: row i`."""
    path = Path(path)
    if path.suffix == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise RejuvError(f"{path}: cannot be read as parquet ({exc})") from exc
        rows = [(f"{path}: row {i}", row) for i, row in enumerate(table, start=1)]
    else:
        rows = [(f"{path}:{lineno}", row) for lineno, row in numbered_jsonl(path, what)]
    for where, row in rows:
        if not isinstance(row, dict):
            raise RejuvError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if not rows:
        raise RejuvError(f"{path}: {what} file has no rows")
    return rows


def read_records(path: str | Path) -> list[dict]:
    """The rows of a JSONL or parquet file."""
    return [row for _, row in read_rows(path)]


def _is_messages(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in value))


def _response_text(completion: str | list[dict]) -> str:
    return completion if isinstance(completion, str) else "".join(m["content"] for m in completion)


def sft_record(row: dict, where: str) -> dict:
    """One row as `{"prompt", "completion"}` (text, or chat messages) or `{"text"}`; an empty response (or
    text) is refused in every format alike."""
    if "messages" in row:
        messages = row["messages"]
        if not _is_messages(messages) or len(messages) < 2:
            raise RejuvError(f"{where}: 'messages' must be a list of at least two "
                             "{\"role\": str, \"content\": str} objects")
        if messages[-1]["role"] != "assistant":
            raise RejuvError(f"{where}: 'messages' must end with the assistant's turn (the response)")
        # Loss and statistics on the final assistant turn only, as for prompt/completion rows.
        record = {"prompt": messages[:-1], "completion": messages[-1:]}
    elif "prompt" in row and row.get("completion", row.get("response")) is not None:
        prompt, completion = row["prompt"], row.get("completion", row.get("response"))
        if not (isinstance(prompt, str) and isinstance(completion, str)) and not (
                _is_messages(prompt) and _is_messages(completion)):
            raise RejuvError(f"{where}: 'prompt' and 'completion' (or 'response') must both be text or both be "
                             "chat messages")
        record = {"prompt": prompt, "completion": completion}
    elif isinstance(row.get("text"), str):
        if not row["text"].strip():
            raise RejuvError(f"{where}: empty 'text'")
        return {"text": row["text"]}
    else:
        raise RejuvError(f"{where}: expected 'prompt'+'completion' (or 'response'), 'messages' or 'text'; "
                         f"found columns {sorted(row)}")
    if not _response_text(record["completion"]).strip():
        raise RejuvError(f"{where}: empty response (the assistant's turn has no text)")
    return record


def gold_answer(value, where: str) -> str | list[str]:
    """A row's gold answer: text, a number (as its text), or a non-empty list of them (any of which counts)."""
    def one(item) -> str:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise RejuvError(f"{where}: 'answer' must be text or a number (or a list of them, any of which counts), "
                             f"got {type(item).__name__} {item!r}"[:300])
        if isinstance(item, float) and not math.isfinite(item):
            raise RejuvError(f"{where}: 'answer' must be a finite number, got {item!r}")
        text = item if isinstance(item, str) else str(item)
        if not text.strip():
            raise RejuvError(f"{where}: empty 'answer' (a gold answer cannot be blank: Math-Verify would grade an "
                             "empty \\boxed{} as correct)")
        return text

    if isinstance(value, list):
        if not value:
            raise RejuvError(f"{where}: 'answer' is an empty list")
        return [one(item) for item in value]
    return one(value)


def sft_rows(path: str | Path, what: str = "data") -> list[tuple[str, dict]]:
    """(where, record) for every row, in one of the SFT formats; one format per file."""
    out = [(where, sft_record(row, where)) for where, row in read_rows(path, what)]
    kinds = {tuple(sorted(r)) for _, r in out}
    if len(kinds) > 1:
        raise RejuvError(f"{path}: rows mix formats {sorted(kinds)}; use one format per file")
    return out


def sft_records(path: str | Path) -> list[dict]:
    return [record for _, record in sft_rows(path)]


def problem_rows(path: str | Path, need_answer: bool = True) -> list[tuple[str, dict]]:
    """(where, record) for rows with a `prompt` (text or chat) and an `answer`, for RL and evaluation."""
    out = []
    for where, row in read_rows(path):
        if "prompt" in row and (isinstance(row["prompt"], str) or _is_messages(row["prompt"])):
            prompt = row["prompt"]
        elif isinstance(row.get("problem"), str):
            prompt = row["problem"]
        elif _is_messages(row.get("messages")):
            messages = row["messages"]
            prompt = messages[:-1] if messages[-1]["role"] == "assistant" else messages
            if not prompt:
                raise RejuvError(f"{where}: 'messages' has no turn before the assistant's")
        else:
            raise RejuvError(f"{where}: expected a 'prompt' or 'problem' (text) or 'messages' column; "
                             f"found columns {sorted(row)}")
        if not (prompt if isinstance(prompt, str) else "".join(m["content"] for m in prompt)).strip():
            raise RejuvError(f"{where}: empty prompt")
        record = {k: v for k, v in row.items() if k not in ("prompt", "problem", "messages")}
        record["prompt"] = prompt
        if need_answer:
            if row.get("answer") is None:
                raise RejuvError(f"{where}: missing the 'answer' column (the gold final answer)")
            record["answer"] = gold_answer(row["answer"], where)
        out.append((where, record))
    return out


def problem_records(path: str | Path, need_answer: bool = True) -> list[dict]:
    return [record for _, record in problem_rows(path, need_answer)]
