"""Answer extraction and checking, and the reward for verl runs exported by `rejuv export-verl`: +1 / −1 from
Math-Verify on the last \\boxed{} answer.

verl loads this file by path (`custom_reward_function.path=.../reward.py`,
`custom_reward_function.name=compute_score`) inside its reward workers, where
rejuv may not be installed; it therefore depends on `math_verify` only.
`rejuv.evaluation.grading` checks answers with these same functions, so the scores equal
those of `rejuv rl --reward math_verify` (a test compares them).
"""

import re
import threading

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text):
    """Content of the last \\boxed{...} (balanced braces), or None."""
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
    return None


def normalize_answer(text):
    """For exact match: strip whitespace, `$`, a trailing period, and thousands separators."""
    text = text.strip().rstrip(".").strip("$ ").rstrip(".")
    text = re.sub(r"\s+", " ", text)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    return text


def verify_answer(gold, answer, timeout):
    """Math-Verify's verdict on a boxed answer against the gold one; text comparison where either does not
    parse. `timeout` (seconds) uses SIGALRM, so it must be None outside the main thread."""
    from math_verify import parse, verify

    gold_text = gold if "\\boxed" in gold or "$" in gold else f"${gold}$"
    parsed_gold = parse(gold_text, parsing_timeout=timeout)
    parsed_answer = parse(f"\\boxed{{{answer}}}", parsing_timeout=timeout)
    if not parsed_gold or not parsed_answer:
        return normalize_answer(gold) == normalize_answer(answer)
    return bool(verify(parsed_gold, parsed_answer, timeout_seconds=timeout))


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """+1 when the last boxed answer matches the gold one, else −1. A row whose gold answer is a list (any of)
    carries them all in `extra_info["answers"]`; `ground_truth` is the first, for verl's own scorers."""
    answer = last_boxed(solution_str)
    if answer is None:
        return -1.0
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    golds = (extra_info or {}).get("answers") or [ground_truth]
    for gold in golds:
        try:
            if verify_answer(str(gold), answer, timeout):
                return 1.0
        except Exception:  # an unparsable answer is a wrong answer
            continue
    return -1.0
