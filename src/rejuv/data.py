"""Local datasets for training and evaluation: JSONL or parquet, validated with clear errors.

Accepted rows (the formats TRL and verl users already have):
- SFT: `prompt` + `completion` (or `response`), chat `messages` (the last one
  from the assistant), or plain `text`.
- RL and evaluation: `prompt` (text or chat messages) or `problem`, plus
  `answer` (the gold final answer); chat `messages` ending with an assistant
  turn are used up to that turn as the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

from rejuv.errors import RejuvError


def jsonl_rows(path: str | Path, what: str = "data") -> list[tuple[int, object]]:
    """(line number, parsed JSON) for every non-blank line; a bad line is named in the error."""
    path = Path(path)
    if not path.is_file():
        raise RejuvError(f"{path}: {what} file not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rows.append((lineno, json.loads(text)))
            except json.JSONDecodeError as exc:
                raise RejuvError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
    return rows


def read_records(path: str | Path) -> list[dict]:
    """Rows of a JSONL (.jsonl/.json lines) or parquet file; JSON errors name the line."""
    path = Path(path)
    if path.suffix == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise RejuvError(f"{path}: cannot be read as parquet ({exc})") from exc
    rows = []
    for lineno, row in jsonl_rows(path):
        if not isinstance(row, dict):
            raise RejuvError(f"{path}:{lineno}: expected a JSON object")
        rows.append(row)
    if not rows:
        raise RejuvError(f"{path}: no rows")
    return rows


def _is_messages(value) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and "role" in m and "content" in m for m in value))


def sft_records(path: str | Path) -> list[dict]:
    """Rows in one of TRL's SFT formats: prompt/completion (text or chat) or text."""
    out = []
    for i, row in enumerate(read_records(path), start=1):
        where = f"{path}: row {i}"
        completion = row.get("completion", row.get("response"))
        if "prompt" in row and completion is not None:
            if isinstance(row["prompt"], str) != isinstance(completion, str):
                raise RejuvError(f"{where}: prompt and completion must both be text or both be chat messages")
            out.append({"prompt": row["prompt"], "completion": completion})
        elif "messages" in row:
            messages = row["messages"]
            if not _is_messages(messages) or messages[-1]["role"] != "assistant" or len(messages) < 2:
                raise RejuvError(f"{where}: 'messages' must be chat messages ending with the assistant's turn")
            # Loss on the final assistant turn only, as for prompt/completion rows.
            out.append({"prompt": messages[:-1], "completion": messages[-1:]})
        elif isinstance(row.get("text"), str):
            out.append({"text": row["text"]})
        else:
            raise RejuvError(f"{where}: expected 'prompt'+'completion' (or 'response'), 'messages' or 'text'; "
                             f"found columns {sorted(row)}")
    kinds = {tuple(sorted(r)) for r in out}
    if len(kinds) > 1:
        raise RejuvError(f"{path}: rows mix formats {sorted(kinds)}; use one format per file")
    return out


def problem_records(path: str | Path, need_answer: bool = True) -> list[dict]:
    """Rows with a `prompt` (text or chat) and an `answer`, for RL and evaluation."""
    out = []
    for i, row in enumerate(read_records(path), start=1):
        where = f"{path}: row {i}"
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
        record = {k: v for k, v in row.items() if k not in ("prompt", "problem", "messages")}
        record["prompt"] = prompt
        if need_answer:
            if row.get("answer") is None:
                raise RejuvError(f"{where}: missing the 'answer' column (the gold final answer)")
            record["answer"] = str(row["answer"])
        out.append(record)
    return out
