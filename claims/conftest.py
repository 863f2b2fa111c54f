"""Fixtures of the claim tests: the run's measured series, computed once per process from the cache,
and every selected test evaluated together, so that Holm's adjustment over the run's checks decides
each test's outcome (claims/catalogue/multiplicity.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from claims.catalogue.evaluate import ClaimResult, evaluate, families_of
from claims.catalogue.multiplicity import adjust
from claims.catalogue.paper import HYPOTHESES, claim_by_id
from claims.plugin import FAMILIES_IN_RUN, SUITE
from claims.records.scheduling import worker_index
from claims.running.measurements import SERIES_ERRORS, compute_one_built_record, load_family, scales_for
from claims.running.progress import progress_for
from claims.statistics.measure import SeriesMeasurements
from claims.statistics.verdicts import NOT_MEASURED, REPLICATED


@pytest.fixture(scope="session")
def measured(pytestconfig) -> Callable[[str], list[SeriesMeasurements]]:
    """family -> its measurements, one per seed; series are built and records computed where missing
    (one worker each)."""
    suite = pytestconfig.stash[SUITE]
    announce = progress_for(pytestconfig)
    cache: dict[str, list[SeriesMeasurements] | Exception] = {}

    def get(family: str) -> list[SeriesMeasurements]:
        families = pytestconfig.stash[FAMILIES_IN_RUN]  # they share one paper scale, hence the checkpoints attributed
        if family not in cache:
            if not cache:  # first use: every series this session reads, built side by side with the other workers
                try:
                    meanwhile = functools.partial(compute_one_built_record, suite, families, announce)
                    suite.build_all(families, rotate=worker_index(), announce=announce, meanwhile=meanwhile)
                except SERIES_ERRORS:
                    pass  # the family that cannot be built raises the same error from load_family below
            try:
                cache[family] = load_family(
                    suite, family, compute=True, rotate=worker_index(), announce=announce, families=families
                )[0]
            except SERIES_ERRORS as err:
                cache[family] = err  # every test that reads the family reports it; nothing is recomputed
        if isinstance(cache[family], Exception):
            raise cache[family]
        return cache[family]

    return get


def _selected_tests(session: pytest.Session) -> list[tuple[str, str]]:
    """(claim id, side) of every claim test selected in this run (after -k and -m), in collection order."""
    return [
        (item.callspec.params["claim_id"], item.callspec.params["side"])
        for item in session.items
        if hasattr(item, "callspec") and {"claim_id", "side"} <= item.callspec.params.keys()
    ]


@pytest.fixture(scope="session")
def run_results(request, pytestconfig, measured) -> Callable[[], tuple[dict[str, ClaimResult | Exception], list[str]]]:
    """(test id -> its evaluated result, Holm-adjusted over every selected test whose series are
    measured, or the error that kept its series from being measured; the families measured, which
    anchor the paper scale), evaluated once per process."""
    suite = pytestconfig.stash[SUITE]
    done: dict[str, ClaimResult | Exception] = {}
    available: dict[str, list[SeriesMeasurements]] = {}

    def get() -> tuple[dict[str, ClaimResult | Exception], list[str]]:
        if done:
            return done, sorted(available)
        errors = {}
        for family in pytestconfig.stash[FAMILIES_IN_RUN]:
            try:
                available[family] = measured(family)
            except SERIES_ERRORS as err:
                errors[family] = err
        scales = scales_for(suite, available)
        results = []
        for claim_id, side in _selected_tests(request.session):
            missing = [f for f in families_of(side) if f not in available]
            if missing:
                done[f"{claim_id}-{side}"] = errors[missing[0]]
                continue
            needed = {f: available[f] for f in families_of(side)}
            result = evaluate(claim_by_id(claim_id), side, needed, scales, suite.rho_pairs, suite.margin)
            results.append(result)
            done[result.test_id] = result
        adjust(results, HYPOTHESES)
        return done, sorted(available)

    return get


@pytest.fixture
def check_claim(run_results, record_property) -> Callable[[str, str], None]:
    """Record one side of a claim's numbers, and fail unless it replicates after Holm's adjustment."""

    def check(claim_id: str, side: str) -> None:
        test_id = f"{claim_id}-{side}"
        families = families_of(side)
        record_property("test_id", test_id)
        record_property("families", ",".join(families))
        results, anchors = run_results()
        record_property("scale_families", ",".join(anchors))
        result = results[test_id]
        if isinstance(result, Exception):
            record_property("verdict", NOT_MEASURED)
            record_property("measured", str(result))
            record_property("error", True)
            pytest.fail(f"{test_id} is not measured: {result}", pytrace=False)
        record_property("verdict", result.holm_verdict)
        record_property("verdict_unadjusted", result.verdict)
        record_property(
            "measured",
            "; ".join(
                f"{c.label} {c.shown}: {c.holm_verdict}"
                + (f" ({c.verdict} unadjusted)" if c.verdict != c.holm_verdict else "")
                for c in result.checks
            ),
        )
        if result.holm_verdict != REPLICATED:
            pytest.fail(result.message(), pytrace=False)

    return check
