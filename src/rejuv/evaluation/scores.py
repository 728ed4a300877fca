"""Pass@1 averaged over K samples per problem, and the unbiased pass@k estimator."""

from __future__ import annotations

import math


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples is correct) from c correct out of n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 ≤ c ≤ n and 1 ≤ k ≤ n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # 1 − C(n−c, k)/C(n, k), as a product to stay exact for large n.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))



def score(correct: list[list[bool]], ks: list[int]) -> dict:
    """Pass@1 averaged over samples, and pass@k, from per-problem grades."""
    counts = [sum(c) for c in correct]
    n = len(correct[0])
    return {
        "problems": len(correct), "samples_per_problem": n,
        "pass@1": sum(c / n for c in counts) / len(counts),
        "pass@k": {str(k): sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in ks},
        "correct_per_problem": counts,
    }
