"""Reward for verl runs exported by `rejuv export-verl`: +1 / −1 from Math-Verify on the last \\boxed{} answer.

verl loads this file by path (`custom_reward_function.path=.../reward.py`,
`custom_reward_function.name=compute_score`) inside its reward workers, where
rejuv may not be installed; it therefore depends on `math_verify` only and
repeats the few lines of answer extraction that `rejuv.grading` also has. The
scores equal those of `rejuv rl --reward math_verify`.
"""

import re
import threading

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _last_boxed(text):
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
    return None


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    from math_verify import parse, verify

    answer = _last_boxed(solution_str)
    if answer is None:
        return -1.0
    # Math-Verify's timeouts use SIGALRM, which works in the main thread only.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold = str(ground_truth)
    try:
        parsed_gold = parse(gold if "\\boxed" in gold or "$" in gold else f"${gold}$", parsing_timeout=timeout)
        parsed = parse(f"\\boxed{{{answer}}}", parsing_timeout=timeout)
        if not parsed_gold or not parsed:
            return 1.0 if answer.strip() == gold.strip() else -1.0
        return 1.0 if verify(parsed_gold, parsed, timeout_seconds=timeout) else -1.0
    except Exception:
        return -1.0
