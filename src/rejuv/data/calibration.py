"""Calibration data: rows to token ids and the span of the response.

Rows are in any SFT format (`data.sft_record`): `{"prompt": ..., "response": ...}`
(`completion` is accepted for `response`, as in TRL), chat `messages` whose last
message is the assistant's answer, or `text`. They become token ids by the rule
every command shares (`rejuv.data.prompts`): the chat template when the SFT tokenizer
has one (`chat_template` auto | always | never), plain text otherwise, so the
calibration sequences are those `rejuv sft` trains on. Every row is validated
before any model is run, and errors name the file and line.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from rejuv.data.prompts import sequence_ids, uses_template
from rejuv.data.rows import sft_rows
from rejuv.errors import RejuvError, warn
from rejuv.io.fingerprint import file_sha256


@dataclass(frozen=True)
class Sample:
    input_ids: list[int]
    response_start: int  # index in input_ids of the first response token
    where: str = ""  # the source row, `file:line`

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
    chat_template: bool = False  # whether the rows went through the tokenizer's chat template


def load_calibration(path: str | Path, tokenizer, max_samples: int = 64, seed: int = 0,
                     max_length: int = 2048, chat_template: str = "auto", positions: int | None = None) -> Calibration:
    """Read, validate and tokenize; keep `max_samples` rows chosen with `seed`. Sequences longer than
    `max_length` or than the model's `positions` are cut to the shorter, with a warning that counts them."""
    if max_samples < 1:
        raise RejuvError(f"max_samples must be at least 1, got {max_samples}")
    limit = min(max_length, positions) if positions else max_length
    path = Path(path)
    rows = sft_rows(path, "calibration")
    templated = uses_template(tokenizer, chat_template, str(path))
    chosen = rows
    if len(rows) > max_samples:
        picks = sorted(random.Random(seed).sample(range(len(rows)), max_samples))
        chosen = [rows[i] for i in picks]
    samples, cut = [], 0
    for where, record in chosen:
        ids, start = sequence_ids(record, tokenizer, templated, where)
        if len(ids) > limit:
            if start + 1 >= limit:
                raise RejuvError(f"{where}: the prompt alone has {start} tokens, beyond "
                                 f"{_limit_text(limit, max_length)}")
            ids, cut = ids[:limit], cut + 1
        samples.append(Sample(ids, start, where))
    if cut:
        warn(f"{path}: {cut} of {len(samples)} calibration sequences are longer than {_limit_text(limit, max_length)} "
             f"and were cut to {limit} tokens")
    return Calibration(str(path), file_sha256(path), len(rows), samples, templated)


def _limit_text(limit: int, max_length: int) -> str:
    return f"max_length {max_length}" if limit == max_length else f"the model's {limit} positions"


def check_vocabulary(calib: Calibration, vocab_size, model: str) -> None:
    """Every token id needs a row in the model's embedding: a tokenizer that belongs to another model fails
    here, naming the row, instead of as an index error inside the forward pass."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise RejuvError(f"{model}: config.json has no integer vocab_size")
    for s in calib.samples:
        if max(s.input_ids) >= vocab_size:
            raise RejuvError(f"{s.where}: token id {max(s.input_ids)} is outside the vocabulary of {model} "
                             f"({vocab_size}); the tokenizer does not belong to this model")
