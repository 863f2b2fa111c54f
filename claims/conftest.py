"""Fixtures of the claim tests: the run's measured series, computed once per process from the cache."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from claims.catalogue.evaluate import evaluate, families_of
from claims.catalogue.paper import claim_by_id
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


@pytest.fixture
def check_claim(pytestconfig, measured, record_property) -> Callable[[str, str], None]:
    """Evaluate one side of a claim, record its numbers, and fail unless it replicates."""

    def check(claim_id: str, side: str) -> None:
        test_id = f"{claim_id}-{side}"
        families = families_of(side)
        record_property("test_id", test_id)
        record_property("families", ",".join(families))
        try:
            needed = {f: measured(f) for f in families}
        except SERIES_ERRORS as err:
            record_property("verdict", NOT_MEASURED)
            record_property("measured", str(err))
            record_property("error", True)
            record_property("scale_families", "")
            pytest.fail(f"{test_id} is not measured: {err}", pytrace=False)
        anchors = dict(needed)
        for family in pytestconfig.stash[FAMILIES_IN_RUN]:  # the run's families share one paper scale
            if family not in anchors:
                try:
                    anchors[family] = measured(family)
                except SERIES_ERRORS:
                    pass  # a family that cannot be measured cannot anchor the scale
        record_property("scale_families", ",".join(sorted(anchors)))
        suite = pytestconfig.stash[SUITE]
        result = evaluate(
            claim_by_id(claim_id), side, needed, scales_for(suite, anchors), suite.rho_pairs, suite.margin
        )
        record_property("verdict", result.verdict)
        record_property("measured", "; ".join(f"{c.label} {c.shown}: {c.verdict}" for c in result.checks))
        if result.verdict != REPLICATED:
            pytest.fail(result.message(), pytrace=False)

    return check
