"""Verdicts: a claim's checks against a series' measurements, with 95% bootstrap intervals."""
from __future__ import annotations

import math
from dataclasses import dataclass

from lpi_core.metrics import bootstrap_interval, random_set_jaccard

from .catalogue import CLAIMS, Check, Claim
from .measure import SeriesMeasurements

REPLICATED, NOT_REPLICATED, INCONCLUSIVE = "replicated", "not replicated", "inconclusive"
NOT_MEASURED = "not measured"  # the checkpoints' scores could not be computed (e.g. non-finite)
MIN_TOP_UNITS = {"attn": 20, "ffn": 50}  # SPEC: top-1% sets smaller than this are not comparable


@dataclass
class CheckResult:
    label: str
    paper: str
    op: str
    threshold: float
    value: float
    interval: tuple[float, float]
    steps: list[int]
    verdict: str
    shown: str  # value [interval], formatted
    threshold_shown: str


@dataclass
class ClaimResult:
    claim: str
    finding: str
    family: str
    model: str
    checks: list[CheckResult]
    verdict: str
    notes: list[str]

    @property
    def test_id(self) -> str:
        return f"{self.claim}[{self.family}]"

    def message(self) -> str:
        parts = [f"{c.label} = {c.shown} (paper {c.paper}; test {c.op} {c.threshold_shown}; checkpoints {c.steps}) -> {c.verdict}" for c in self.checks]
        return f"{self.claim} [{self.family}, {self.model}]: {self.verdict}: " + "; ".join(parts) + "".join(f" NOTE: {n}" for n in self.notes)


def check_verdict(op: str, threshold: float, value: float, interval: tuple[float, float]) -> str:
    """Replicated: holds and its interval agrees; inconclusive: the interval straddles; else not replicated."""
    if math.isnan(value) or any(math.isnan(x) for x in interval):
        return INCONCLUSIVE
    holds = value > threshold if op == ">" else value < threshold
    low, high = interval
    if low <= threshold <= high:
        return INCONCLUSIVE
    return REPLICATED if holds else NOT_REPLICATED


def combine(verdicts: list[str]) -> str:
    if NOT_REPLICATED in verdicts:
        return NOT_REPLICATED
    return INCONCLUSIVE if INCONCLUSIVE in verdicts else REPLICATED


def _evaluate_check(check: Check, m: SeriesMeasurements) -> CheckResult:
    quantity = check.measure(m)
    interval = bootstrap_interval(quantity.replicates)
    verdict = check_verdict(check.op, check.threshold, quantity.value, interval)
    shown = f"{check.format(quantity.value)} [{check.format(interval[0])}, {check.format(interval[1])}]"
    return CheckResult(
        check.label, check.paper, check.op, check.threshold, quantity.value, interval, quantity.steps, verdict, shown, check.format(check.threshold)
    )


def sizing_notes(claim: Claim, m: SeriesMeasurements) -> list[str]:
    """Say so where a top-1% set is too small to compare with the paper's (SPEC: sizing)."""
    notes = []
    for kind in ("ffn", "attn"):
        if kind in claim.id or (claim.id.startswith("ffn") and kind == "ffn"):
            top = max(1, round(0.01 * m.units[kind]))
            if top < MIN_TOP_UNITS[kind]:
                notes.append(f"top-1% {kind.upper()} set has only {top} units (< {MIN_TOP_UNITS[kind]}); random-set Jaccard {random_set_jaccard(m.units[kind]):.4f}")
    return notes


def undefined_notes(checks: list[CheckResult]) -> list[str]:
    notes = []
    for c in checks:
        if math.isfinite(c.value):
            continue
        if len(c.steps) < 2:
            notes.append(f"{c.label} is undefined: fewer than two of this series' checkpoints fall in the paper's window")
        else:
            notes.append(
                f"{c.label} is undefined on checkpoints {c.steps} (a drop from a HIT@10 of 0, a layer profile "
                "without variance, or no positive gain)"
            )
    return notes


def evaluate(claim: Claim, m: SeriesMeasurements) -> ClaimResult:
    checks = [_evaluate_check(check, m) for check in claim.checks[m.family]]
    notes = sizing_notes(claim, m) + undefined_notes(checks)
    return ClaimResult(claim.id, claim.finding, m.family, m.name, checks, combine([c.verdict for c in checks]), notes)


def claim_by_id(claim_id: str) -> Claim:
    for claim in CLAIMS:
        if claim.id == claim_id:
            return claim
    raise KeyError(f"no claim {claim_id!r}; claims: {', '.join(c.id for c in CLAIMS)}")
