"""Many checks in one run: Holm's step-down adjustment of their one-sided p-values, which decides.

Each check is a one-sided test at 2.5% (its 95% interval wholly on one side). Over m checks whose
effects were all null, up to m · 2.5% of them would read "replicated" by chance; Holm's adjustment
keeps the chance of even one such false replication at 2.5% over the whole run, for any
dependence between the checks. The adjusted verdict is each test's outcome (pytest's pass or
fail), the report's verdict column and its tallies; the unadjusted one is shown beside it. The
family is the checks of the tests in the run (after -k), each counted once: the catalogue has no
two checks over the same pairs (a climb and a trend after 200K were one finding: the trend stays).
"""

from __future__ import annotations

from collections.abc import Sequence

from claims.catalogue.evaluate import ClaimResult
from claims.statistics.verdicts import INCONCLUSIVE, NOT_REPLICATED, REPLICATED, combine

ALPHA = 0.025  # one-sided: the tail of a 95% interval


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the given order: the k-th smallest of m is max over j ≤ k of
    min(1, (m - j + 1) · p_(j)). None (an undefined check) stays None and is not one of the m."""
    ranked = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - rank) * p))
        adjusted[i] = running
    return adjusted


def expected_false_replications(tests: int) -> float:
    """How many of `tests` null checks would read "replicated" on average, unadjusted."""
    return tests * ALPHA


def adjust(results: Sequence[ClaimResult]) -> dict:
    """Set every check's Holm-adjusted p-value and verdict, and every test's Holm verdict, in place;
    returns the run's summary (claims.json's `multiplicity`). A check is replicated after adjustment
    when its claimed side's adjusted p < 2.5%, not replicated when the other side's is, else inconclusive;
    an undefined check keeps its verdict."""
    checks = [c for r in results for c in r.checks]
    claimed, other = holm([c.p_value for c in checks]), holm([c.p_value_opposite for c in checks])
    for check, p, q in zip(checks, claimed, other):
        check.holm_p = p
        if p is None:
            check.holm_verdict = check.verdict
        else:
            check.holm_verdict = (
                REPLICATED if p < ALPHA else NOT_REPLICATED if q is not None and q < ALPHA else INCONCLUSIVE
            )
    for result in results:
        result.holm_verdict = combine([c.holm_verdict for c in result.checks])
    tested = sum(p is not None for p in claimed)
    count = lambda verdicts, wanted: sum(v == wanted for v in verdicts)  # noqa: E731
    return {
        "decides": "holm",
        "tests": len(results),
        "tests_replicated": count([r.verdict for r in results], REPLICATED),
        "tests_replicated_holm": count([r.holm_verdict for r in results], REPLICATED),
        "checks": tested,
        "alpha_one_sided": ALPHA,
        "expected_false_replications": expected_false_replications(tested),
        "replicated": count([c.verdict for c in checks], REPLICATED),
        "replicated_holm": count([c.holm_verdict for c in checks], REPLICATED),
        "not_replicated": count([c.verdict for c in checks], NOT_REPLICATED),
        "not_replicated_holm": count([c.holm_verdict for c in checks], NOT_REPLICATED),
    }
