"""Calibration data: JSONL rows to token ids and the span of the response.

A row is either `{"prompt": ..., "response": ...}` (`completion` is accepted for
`response`, as in TRL) or `{"messages": [{"role": ..., "content": ...}, ...]}`
whose last message is the assistant's answer; for messages the SFT tokenizer's
chat template is applied. Every row is validated before any model is run, and
errors name the file and line.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from rejuv.data import jsonl_rows
from rejuv.errors import RejuvError


@dataclass(frozen=True)
class Sample:
    input_ids: list[int]
    response_start: int  # index in input_ids of the first response token
    line: int  # 1-based line in the source file

    @property
    def predict_positions(self) -> range:
        """Positions whose next-token distribution predicts a response token."""
        return range(max(self.response_start, 1) - 1, len(self.input_ids) - 1)


@dataclass(frozen=True)
class Calibration:
    path: str
    sha256: str
    rows: int  # valid rows in the file
    samples: list[Sample]  # the ones used (at most max_samples, chosen with the seed)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_rows(path: str | Path) -> list[tuple[int, dict]]:
    """Parse and validate every row; returns (line number, row)."""
    rows = jsonl_rows(path, "calibration")
    for lineno, row in rows:
        _validate_row(row, f"{path}:{lineno}")
    if not rows:
        raise RejuvError(f"{path}: calibration file has no rows")
    return rows


def _validate_row(row: object, where: str) -> None:
    if not isinstance(row, dict):
        raise RejuvError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        messages = row["messages"]
        if (not isinstance(messages, list) or len(messages) < 2
                or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                           and isinstance(m.get("content"), str) for m in messages)):
            raise RejuvError(f"{where}: 'messages' must be a list of at least two "
                             "{\"role\": str, \"content\": str} objects")
        if messages[-1]["role"] != "assistant":
            raise RejuvError(f"{where}: the last message must be the assistant's (the response to score)")
        return
    response = row.get("response", row.get("completion"))
    if not isinstance(row.get("prompt"), str) or not isinstance(response, str):
        raise RejuvError(f"{where}: expected string fields 'prompt' and 'response' (or 'completion'), "
                         f"or a 'messages' list; found keys {sorted(row)}")
    if not response:
        raise RejuvError(f"{where}: empty response")


def tokenize_row(row: dict, tokenizer, where: str, append_eos: bool = True) -> tuple[list[int], int]:
    """Token ids of prompt+response and the index where the response starts."""
    if "messages" in row:
        if not getattr(tokenizer, "chat_template", None):
            raise RejuvError(f"{where}: chat 'messages' need a chat template, and the SFT tokenizer has none")
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        prefix = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False,
                                               add_generation_prompt=True)
        if not full.startswith(prefix):
            raise RejuvError(f"{where}: the chat template does not render the conversation as "
                             "prompt + answer, so the response span cannot be found")
        prompt_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(full[len(prefix):], add_special_tokens=False)["input_ids"]
    else:
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        response = row.get("response", row.get("completion"))
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        eos = tokenizer.eos_token_id
        # SFT trainers end every demonstration with EOS; score that prediction too.
        if append_eos and eos is not None and (not response_ids or response_ids[-1] != eos):
            response_ids = response_ids + [eos]
    if not response_ids:
        raise RejuvError(f"{where}: the response has no tokens")
    return list(prompt_ids) + list(response_ids), len(prompt_ids)


def load_calibration(path: str | Path, tokenizer, max_samples: int = 64, seed: int = 0,
                     max_length: int = 2048) -> Calibration:
    """Read, validate and tokenize; keep `max_samples` rows chosen with `seed`."""
    if max_samples < 1:
        raise RejuvError(f"max_samples must be at least 1, got {max_samples}")
    path = Path(path)
    rows = read_rows(path)
    chosen = rows
    if len(rows) > max_samples:
        picks = sorted(random.Random(seed).sample(range(len(rows)), max_samples))
        chosen = [rows[i] for i in picks]
    samples = []
    for lineno, row in chosen:
        where = f"{path}:{lineno}"
        ids, start = tokenize_row(row, tokenizer, where)
        if len(ids) > max_length:
            if start + 1 >= max_length:
                raise RejuvError(f"{where}: the prompt alone has {start} tokens, beyond max_length "
                                 f"{max_length}")
            ids = ids[:max_length]
        samples.append(Sample(ids, start, lineno))
    return Calibration(str(path), file_sha256(path), len(rows), samples)
