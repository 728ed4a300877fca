"""Answer extraction and Math-Verify grading, safe in any thread.

Math-Verify bounds its own time with SIGALRM, which only works in the main
thread. `grade_many` therefore uses those signal timeouts in the main thread,
and elsewhere (a reward function called from a worker thread, a web server, a
data-loader thread) disables them and runs the check in a worker process that
is killed when it overruns.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import threading
from collections import OrderedDict
from collections.abc import Sequence

from rejuv.evaluation.verl_reward import last_boxed, verify_answer

TIMEOUT_S = 5.0


def _verify(gold: str, answer: str, use_signals: bool) -> bool:
    return verify_answer(gold, answer, int(TIMEOUT_S) if use_signals else None)


def _verify_quiet(args: tuple[str, str]) -> bool:
    try:
        return _verify(args[0], args[1], use_signals=False)
    except Exception:  # an unparsable answer is a wrong answer
        return False


class _Pool:
    """One worker process, recreated after a timeout (a stuck sympy call cannot be interrupted)."""

    def __init__(self) -> None:
        self._pool = None
        self._lock = threading.Lock()

    def _get(self):
        if self._pool is None:
            # spawn: forking a process that runs torch threads can deadlock.
            self._pool = mp.get_context("spawn").Pool(1)
        return self._pool

    def run(self, pairs: Sequence[tuple[str, str]], timeout: float) -> list[bool | None]:
        """A verdict per pair; None where the check overran (counted wrong, but not a verdict to remember)."""
        with self._lock:
            results: list[bool | None] = []
            for pair in pairs:
                job = self._get().apply_async(_verify_quiet, (pair,))
                try:
                    results.append(bool(job.get(timeout)))
                except mp.TimeoutError:
                    self._pool.terminate()
                    self._pool = None
                    results.append(None)
            return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


_POOL = _Pool()
# Closed before the interpreter tears modules down; a pool collected afterwards fails noisily in its __del__.
atexit.register(_POOL.close)


# Verdicts by (gold, boxed answer): two rewards that grade the same completions in one GRPO step
# (`math_verify` and `brier`) pay for Math-Verify once. Overruns and errors are not remembered.
_VERDICTS: OrderedDict[tuple[str, str], bool] = OrderedDict()
_VERDICTS_MAX = 8192
_VERDICTS_LOCK = threading.Lock()


def grade_many(golds: Sequence[str | Sequence[str]], completions: Sequence[str],
               timeout: float = TIMEOUT_S) -> list[bool]:
    """Is the last \\boxed{} answer of each completion equal to its gold answer (Math-Verify)? A gold answer
    given as a list is *any of*: the completion is right when it matches one of them."""
    alternatives = [[g] if isinstance(g, str) else list(g) for g in golds]
    verdicts = _grade_pairs([g for alts in alternatives for g in alts],
                            [c for alts, c in zip(alternatives, completions, strict=True) for _ in alts], timeout)
    results, start = [], 0
    for alts in alternatives:
        results.append(any(verdicts[start: start + len(alts)]))
        start += len(alts)
    return results


def _grade_pairs(golds: Sequence[str], completions: Sequence[str], timeout: float) -> list[bool]:
    answers = [last_boxed(c) for c in completions]
    results = [False] * len(completions)
    todo = []
    with _VERDICTS_LOCK:
        for i, pair in enumerate(zip(golds, answers, strict=True)):
            if pair[1] is None:
                continue
            if pair in _VERDICTS:
                results[i] = _VERDICTS[pair]
            else:
                todo.append((i, pair))
    verdicts: list[bool | None]
    if threading.current_thread() is threading.main_thread():
        verdicts = []
        for _, (gold, answer) in todo:
            try:
                verdicts.append(_verify(gold, answer, use_signals=True))
            except Exception:  # Math-Verify's own timeout or a parser error: not correct
                verdicts.append(None)
    else:
        verdicts = _POOL.run([pair for _, pair in todo], timeout) if todo else []
    with _VERDICTS_LOCK:
        for (i, pair), ok in zip(todo, verdicts, strict=True):
            results[i] = bool(ok)
            if ok is not None:
                _VERDICTS[pair] = ok
                if len(_VERDICTS) > _VERDICTS_MAX:
                    _VERDICTS.popitem(last=False)
    return results


def grade(gold: str | Sequence[str], completion: str) -> bool:
    return grade_many([gold], [completion])[0]
