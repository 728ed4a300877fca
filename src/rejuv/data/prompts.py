"""One rule from a data row to token ids, shared by every command that reads rows.

`sft`, `rl`, `plan`, `eval`, `diagnose` and `apply`'s calibration all call these
functions, so a model is trained, probed, evaluated and diagnosed on the same
prompt ids for the same row.

- `chat_template` (the same default, `auto`, everywhere): `auto` uses the
  tokenizer's chat template when it has one, plain text otherwise; `always`
  requires a template; `never` uses plain text and refuses chat-message rows.
- With the template, a text prompt becomes one user message. The prompt ids are
  the template's rendering with the generation prompt, tokenized without adding
  special tokens (the template writes its own BOS), as TRL's trainers tokenize
  chat prompts.
- Plain text: the tokenizer's ids with its special tokens (a BOS where the
  tokenizer adds one), as TRL tokenizes text prompts.
- A response (SFT rows, calibration rows) is tokenized on its own and appended
  to the prompt ids, so training sees exactly the context generation starts
  from. (TRL tokenizes prompt + completion as one string, where a BPE merge can
  cross the boundary and change the last prompt token.) Plain-text responses
  end with EOS; templated ones end with whatever the template closes the
  assistant's turn with.
- `text` rows (language modelling, no prompt) are used as they are, with EOS.
"""

from __future__ import annotations

from rejuv.errors import RejuvError, warn

MODES = ("auto", "always", "never")


def chat_template_option(affects: str | tuple[str, ...] = ()):
    """The `chat_template` field of every recipe config: one rule for every command, so one option."""
    from rejuv.options import option

    return option("auto", choices=MODES, help="Rows through the tokenizer's chat template: auto = when it has one.",
                  affects=affects, shared=True)


def has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def uses_template(tokenizer, mode: str, where: str = "the tokenizer") -> bool:
    """Whether rows go through the chat template under `mode` with this tokenizer."""
    if mode == "always" and not has_template(tokenizer):
        raise RejuvError(f"{where}: --chat-template always, but the tokenizer has no chat template")
    return mode == "always" or (mode == "auto" and has_template(tokenizer))


def as_messages(prompt: str | list[dict]) -> list[dict]:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def model_prompt(prompt: str | list[dict], templated: bool, where: str) -> str | list[dict]:
    """The prompt in the form a TRL trainer turns into exactly `prompt_ids`: chat messages or text."""
    if templated:
        return as_messages(prompt)
    if isinstance(prompt, list):
        raise RejuvError(f"{where}: chat messages need the chat template (the tokenizer has none, or "
                         "--chat-template never was given)")
    return prompt


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def prompt_ids(prompt: str | list[dict], tokenizer, templated: bool, where: str,
               positions: int | None = None) -> list[int]:
    """Token ids a model generates from; a prompt that fills the model's `positions` is refused by its row."""
    prompt = model_prompt(prompt, templated, where)
    ids = (_ids(tokenizer, _render(tokenizer, prompt, True), special=False) if templated
           else _ids(tokenizer, prompt, special=True))
    if positions is not None and len(ids) >= positions:
        raise RejuvError(f"{where}: the prompt has {len(ids)} tokens, and the model takes {positions} positions "
                         "(max_position_embeddings): nothing is left to generate")
    return ids


def warn_long_completions(prompts: list[list[int]], max_new_tokens: int, positions: int | None, what: str) -> int:
    """Warn (and return how many) when a prompt plus `max_new_tokens` passes the model's positions: such a
    completion runs past what the model was trained on."""
    if positions is None:
        return 0
    over = sum(len(p) + max_new_tokens > positions for p in prompts)
    if over:
        warn(f"{what}: {over} of {len(prompts)} prompts leave fewer than {max_new_tokens} new tokens within the "
             f"model's {positions} positions; their completions may pass them (lower max_new_tokens)")
    return over


def sequence_ids(record: dict, tokenizer, templated: bool, where: str) -> tuple[list[int], int]:
    """(token ids of prompt + response, index of the first response token) for an SFT-format record.

    `record` is `{"prompt", "completion"}` (text, or chat messages with the assistant's turn as the
    completion) or `{"text"}`, as `data.sft_records` returns them.
    """
    eos = tokenizer.eos_token_id
    if "text" in record:
        ids = _ids(tokenizer, record["text"], special=True)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        if len(ids) < 2:
            raise RejuvError(f"{where}: the text has fewer than two tokens")
        return ids, 0
    prompt, completion = record["prompt"], record["completion"]
    if templated:
        messages = as_messages(prompt)
        answer = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        prefix = _render(tokenizer, messages, True)
        full = _render(tokenizer, messages + answer, False)
        if not full.startswith(prefix):
            raise RejuvError(f"{where}: the chat template does not render the conversation as prompt + answer, "
                             "so the response span cannot be found")
        head, response = _ids(tokenizer, prefix, special=False), _ids(tokenizer, full[len(prefix):], special=False)
    else:
        model_prompt(prompt, False, where)  # refuses chat messages without a template
        head, response = _ids(tokenizer, prompt, special=True), _ids(tokenizer, completion, special=False)
        # SFT trainers end every plain-text demonstration with EOS.
        if eos is not None and (not response or response[-1] != eos):
            response.append(eos)
    if not response:
        raise RejuvError(f"{where}: the response has no tokens")
    return head + response, len(head)
