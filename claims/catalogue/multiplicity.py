"""Many checks in one run: Holm's step-down adjustment of their one-sided p-values, which decides.

Each check is a one-sided test at 2.5% (its 95% interval wholly on one side). Over m checks whose
effects were all null, up to m · 2.5% of them would read "replicated" by chance; Holm's adjustment
keeps the chance of even one such false replication at 2.5% over the whole run, for any
dependence between the checks. The adjusted verdict is each test's outcome (pytest's pass or
fail), the report's verdict column and its tallies; the unadjusted one is shown beside it. The
family is the catalogue's hypotheses, whichever tests a run selects (those not in the run count as
p = 1), so a run of some tests never replicates what the whole run would not. A hypothesis is a
check, or a test's co-primary checks taken together (J_stab and its reliability-corrected twin;
R_t and its routed control); no two checks restate one another over the same pairs (a climb and a
trend after 200K were one finding: the trend stays).
"""

from __future__ import annotations

from collections.abc import Sequence

from claims.catalogue.evaluate import CheckResult, ClaimResult
from claims.statistics.verdicts import ALPHA, INCONCLUSIVE, NOT_REPLICATED, REPLICATED, combine


def holm(p_values: Sequence[float | None], family: int | None = None) -> list[float | None]:
    """Holm-adjusted p-values, in the given order: the k-th smallest of m is max over j ≤ k of
    min(1, (m - j + 1) · p_(j)). None (an undefined check) stays None. m is `family` where given
    (hypotheses not in `p_values` count as p = 1, last in the order), else the defined p-values'."""
    ranked = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    size = max(len(ranked), family or 0)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (size - rank) * p))
        adjusted[i] = running
    return adjusted


def expected_false_replications(tests: int) -> float:
    """How many of `tests` null checks would read "replicated" on average, unadjusted."""
    return tests * ALPHA


def _groups(results: Sequence[ClaimResult]) -> dict[tuple[str, str], list[CheckResult]]:
    """The run's hypotheses: each check alone, or its test's co-primary checks as one (`coprimary`)."""
    groups: dict[tuple[str, str], list[CheckResult]] = {}
    for result in results:
        for i, check in enumerate(result.checks):
            groups.setdefault((result.test_id, check.coprimary or f"check {i}"), []).append(check)
    return groups


def adjust(results: Sequence[ClaimResult], family: int | None = None) -> dict:
    """Set every check's Holm-adjusted p-value and verdict, and every test's Holm verdict, in place;
    returns the run's summary (claims.json's `multiplicity`). Co-primary checks (replicated only
    together) are one hypothesis: replicated when the larger of their p-values survives, not
    replicated when the smaller of their other-side p-values, times their number (Bonferroni within
    the group), does; then the check that gave it is not replicated, the others inconclusive.
    `family`: the number of hypotheses Holm divides by (the catalogue's, `paper.HYPOTHESES`, so that
    a run of some tests is never less strict than the whole run); None: this run's. A check is
    replicated after adjustment when its hypothesis' adjusted p < 2.5%, not replicated when the
    other side's is, else inconclusive; an undefined check keeps its verdict."""
    groups = list(_groups(results).values())
    defined = [all(c.p_value is not None for c in g) for g in groups]
    claimed = holm([max(c.p_value for c in g) if ok else None for g, ok in zip(groups, defined)], family)
    other = holm(
        [min(1.0, len(g) * min(c.p_value_opposite for c in g)) if ok else None for g, ok in zip(groups, defined)],
        family,
    )
    for group, p, q in zip(groups, claimed, other):
        for check in group:
            check.holm_p = p
            if check.p_value is None:
                check.holm_verdict = check.verdict
            elif p is None:
                check.holm_verdict = INCONCLUSIVE  # a co-primary partner is undefined
            elif p < ALPHA:
                check.holm_verdict = REPLICATED
            else:  # the group is not replicated through its check(s) whose other side survives
                wrong_way = (
                    q is not None and q < ALPHA and check.p_value_opposite == min(x.p_value_opposite for x in group)
                )
                check.holm_verdict = NOT_REPLICATED if wrong_way else INCONCLUSIVE
    for result in results:
        result.holm_verdict = combine([c.holm_verdict for c in result.checks])
    checks = [c for r in results for c in r.checks]
    for check in checks:
        if check.holm_verdict != INCONCLUSIVE:
            check.seeds_needed = None  # decided after adjustment: no seeds to plan
    tested = sum(p is not None for p in claimed)
    defined_checks = sum(c.p_value is not None for c in checks)
    count = lambda verdicts, wanted: sum(v == wanted for v in verdicts)  # noqa: E731
    return {
        "decides": "holm",
        "family": max(tested, family or 0),
        "tests": len(results),
        "tests_replicated": count([r.verdict for r in results], REPLICATED),
        "tests_replicated_holm": count([r.holm_verdict for r in results], REPLICATED),
        "checks": defined_checks,
        "hypotheses": tested,
        "alpha_one_sided": ALPHA,
        "expected_false_replications": expected_false_replications(defined_checks),
        "replicated": count([c.verdict for c in checks], REPLICATED),
        "replicated_holm": count([c.holm_verdict for c in checks], REPLICATED),
        "not_replicated": count([c.verdict for c in checks], NOT_REPLICATED),
        "not_replicated_holm": count([c.holm_verdict for c in checks], NOT_REPLICATED),
    }
