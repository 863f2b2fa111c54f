"""The lpi-claims pytest plugin: options, markers and hooks in one place (the root conftest.py registers it).

pytest claims                       # the miniature replication (embedded default), on CPU
pytest claims -k moe --gpu -n 2     # the MoE-side checks only (the dense series is never loaded)
pytest claims -k contrast           # the MoE − dense comparisons
pytest claims --suite paper --gpu   # the paper's checkpoints from the hub
"""

from __future__ import annotations

import os

import pytest

from claims.running.options import OPTIONS
from claims.running.suite import SuiteConfig, SuiteOptionError
from claims.statistics.verdicts import NOT_MEASURED

SUITE = pytest.StashKey[SuiteConfig]()
FAMILIES_IN_RUN = pytest.StashKey[tuple[str, ...]]()  # the families the selected claim tests read


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lpi-claims", "paper claims replication")
    for option in OPTIONS:
        if option.kind is bool:
            group.addoption(f"--{option.name}", action="store_true", help=option.help)
        else:
            default = f" (default {option.default})" if option.default not in (None, "") else ""
            group.addoption(f"--{option.name}", default=None, help=option.help + default)


def suite_from_options(config: pytest.Config) -> SuiteConfig:
    try:
        return SuiteConfig.from_options({o.field: config.getoption(o.field) for o in OPTIONS})
    except SuiteOptionError as err:
        raise pytest.UsageError(str(err)) from None


def _pin_worker_resources(suite: SuiteConfig) -> None:
    """One GPU per xdist worker, or its share of the CPU threads (before torch initialises CUDA:
    `torch.cuda.device_count()` counts through NVML without initialising it)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    index, count = int(worker[2:]), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    import torch

    if suite.gpu:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        if devices:
            os.environ["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // count))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id): a paper claim; the test passes when the claim replicates")
    config.addinivalue_line("markers", "gpu: needs CUDA; runs only with --gpu")
    suite = suite_from_options(config)
    config.stash[SUITE] = suite
    config.stash[FAMILIES_IN_RUN] = ()
    _pin_worker_resources(suite)  # first: CUDA reads CUDA_VISIBLE_DEVICES once, when it initialises
    if suite.gpu:
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError("--gpu was given but torch sees no CUDA device; drop --gpu to run on the CPU")
    from claims.records.measurement_store import measure_code_version

    # the records' and measurements' code version, fixed for the whole run even if a source file changes meanwhile
    measure_code_version()
    from claims.running.progress import TerminalProgress, bar_seconds

    try:
        bar_seconds()
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ClaimsReporter(config), "lpi-claims-reporter")
        config.pluginmanager.register(TerminalProgress(config), "lpi-claims-progress")


def pytest_unconfigure(config: pytest.Config) -> None:
    progress = config.pluginmanager.get_plugin("lpi-claims-progress")
    if progress is not None:
        progress.close()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: tell each worker where to write its progress lines (the controller prints them)."""
    from claims.running.progress import WORKER_INPUT

    node.workerinput[WORKER_INPUT] = node.config.pluginmanager.get_plugin("lpi-claims-progress").worker_directory()


def pytest_report_header(config: pytest.Config) -> list[str]:
    import torch
    import transformers

    cuda = torch.version.cuda if torch.cuda.is_available() else "no CUDA device"
    suite = config.stash[SUITE]
    return [
        f"lpi-claims: torch {torch.__version__}, transformers {transformers.__version__}, CUDA {cuda}",
        f"lpi-claims: suite={suite.suite} preset={suite.preset} seeds={suite.seed_count} gpu={suite.gpu} "
        f"examples={suite.examples or 906} bootstrap={suite.bootstrap} scores={suite.lpi_mode} "
        f"rank-by={suite.rank_by} target={suite.target} st-rank={suite.st_rank} "
        f"attn-positions={suite.attn_positions} rho-pairs={suite.rho_pairs}",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("gpu"):
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs --gpu"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """After -k/-m selection: the families the selected claim tests read (they share one paper scale)."""
    from claims.catalogue.evaluate import families_of

    sides = {
        item.callspec.params["side"]
        for item in session.items
        if hasattr(item, "callspec") and "side" in item.callspec.params
    }
    session.config.stash[FAMILIES_IN_RUN] = tuple(
        f for f in ("moe", "dense") if any(f in families_of(s) for s in sides)
    )


class ClaimsReporter:
    """On the controlling process: a line per test as it finishes, then the report from the cache."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.claims: dict[str, dict] = {}
        self.not_measured: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if report.when != "call" or "test_id" not in props:
            return
        if "verdict" not in props:  # it raised before it had a measurement: an error in the suite itself
            crash = getattr(report.longrepr, "reprcrash", None)
            props |= {
                "verdict": NOT_MEASURED,
                "error": True,
                "measured": crash.message if crash else str(report.longrepr).splitlines()[-1],
            }
        if props["verdict"] == NOT_MEASURED and props.get("error"):
            self.not_measured[props["test_id"]] = props["measured"]
        else:
            self.claims[props["test_id"]] = props
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            if reporter._tw.width_of_current_line:  # after -q progress characters
                reporter._tw.line()
            before = props.get("verdict_unadjusted", props["verdict"])
            unadjusted = f" (Holm; {before} unadjusted)" if before != props["verdict"] else ""
            reporter.write_line(f"claim {props['test_id']}: {props['verdict']}{unadjusted}: {props['measured']}")

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if not self.claims and not self.not_measured:
            return
        from claims.reporting.report import build_report
        from claims.reporting.table import table
        from claims.running.measurements import load_family

        suite = config.stash[SUITE]
        families = sorted({f for p in self.claims.values() for f in p["families"].split(",")} | self._anchors())
        measured, info = {}, {}
        for family in families:
            measured[family], info[family] = load_family(suite, family, compute=False, families=families)
        results, out = build_report(suite, measured, info, test_ids=set(self.claims), not_measured=self.not_measured)
        terminalreporter.section("lpi-claims: claims vs measured")
        terminalreporter.write_line(table(results, suite.lpi_mode))
        for test_id, reason in self.not_measured.items():
            terminalreporter.write_line(f"{test_id}: {NOT_MEASURED}: {reason}")
        terminalreporter.write_line(f"report: {out}/claims.md, {out}/claims.json, figures in {out}/")

    def _anchors(self) -> set[str]:
        """The families whose onsets anchored the tests' paper scale (measured ones only)."""
        return {f for p in self.claims.values() for f in p["scale_families"].split(",") if f}
