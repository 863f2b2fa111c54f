"""The claims suite end to end on the smoke preset, through pytester (a separate pytest process)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from claims.catalogue.paper import CLAIMS, claim_sides
from claims.fixtures.miniature.build import MiniatureRun
from claims.records.store import RecordStore
from claims.running.suite import SuiteConfig
from claims.statistics.verdicts import NOT_MEASURED, VERDICTS, verdict
from claims.storage.atomic import TMP_PREFIX
from lpi_core import evaluation_set, load_model
from lpi_core.capture import last_position_logits
from lpi_core.reproducible import cpu_model
from lpi_core.tokenization import encode_prompts, target_token_ids

ROOT = Path(__file__).resolve().parents[1]
EVERY_TEST = {f"{c}-{s}" for c, s in claim_sides()}
MOE_TESTS = {f"{c}-{s}" for c, s in claim_sides() if s == "moe"}
ENV = {**os.environ, "TQDM_DISABLE": "1"}


def run_claims(pytester, cache: Path, report: Path, *args: str):
    return pytester.runpytest_subprocess(
        str(ROOT / "claims"),
        "--preset",
        "smoke",
        "--cache-dir",
        str(cache),
        "--report-dir",
        str(report),
        "--examples",
        "120",
        "--bootstrap",
        "20",
        "-p",
        "no:cacheprovider",
        "-q",
        *args,
    )


def attributed(cache: Path) -> list[tuple[str, int]]:
    """(family, step) of each record a smoke run of the cache's built series computes: each series'
    checkpoints from the later knowledge onset of the built families on (their shared paper scale's
    start, where the smoke run keeps at least two checkpoints)."""
    run = MiniatureRun(next((cache / "miniature").glob("smoke-*")))
    built = [f for f in ("moe", "dense") if run.is_built(f, 0)]
    anchor = max(run.onset_step(f) for f in built)
    return [(f, s) for f in built for s in run.series(f).steps if s >= anchor]


def record_files(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (cache / "records").glob("*.pt")}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One full smoke run shared by the tests below (pytester is function-scoped, so run it by hand)."""
    base = tmp_path_factory.mktemp("claims")
    cache, report = base / "cache", base / "report"
    env = {**ENV, "LPI_CLAIMS_PROGRESS_SECONDS": "0.2"}  # bars would show as lines, but -q hides them
    env.pop("TQDM_DISABLE")
    done = subprocess.run(claims_command(cache, report), cwd=base, capture_output=True, text=True, env=env)
    return done, cache, report


def test_report_holds_every_check_with_its_interval_and_a_verdict_that_follows_the_rule(first_run):
    done, cache, report = first_run
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads((report / "claims.json").read_text())
    assert {c["test_id"] for c in payload["claims"]} == EVERY_TEST
    for claim in payload["claims"]:
        assert claim["verdict"] in VERDICTS and claim["seeds"] == [0]
        for check in claim["checks"]:
            assert {"value", "interval", "op", "threshold", "verdict", "checkpoints", "method"} <= check.keys()
            low, high = (float("nan") if x is None else x for x in check["interval"])
            assert check["verdict_unadjusted"] == verdict(
                check["op"], check["threshold"], (low, high), testable=check["untestable"] is None
            )
            assert "20 resamples over examples (one seed)" in check["method"]
            set_statistic = any(word in check["label"] for word in ("J", "R_t", "stability"))
            assert ("centred percentile" in check["method"]) == set_statistic
            assert check["verdict"] in VERDICTS and check["seeds_needed"] is None  # one seed: no seed spread to scale
            if check["p_value"] is not None:  # the p-values and the verdicts tell the same
                assert (check["p_value"] < 0.025) == (check["verdict_unadjusted"] == "replicated")
                assert (check["holm_p"] < 0.025) == (check["verdict"] == "replicated")
    # Holm's verdict decides: the tests pytest failed are exactly those not replicated after adjustment
    failed = set(re.findall(r"FAILED \S*test_claim\[([^\]]+)\]", done.stdout))
    assert failed == {c["test_id"] for c in payload["claims"] if c["verdict"] != "replicated"}, done.stdout[-3000:]
    checks = [c for claim in payload["claims"] for c in claim["checks"]]
    assert payload["context"]["multiplicity"]["checks"] == sum(c["p_value"] is not None for c in checks)
    assert "NaN" not in (report / "claims.json").read_text()
    markdown = (report / "claims.md").read_text()
    assert all(c.id in markdown for c in CLAIMS) and "| test " in markdown
    assert "rank_by=abs" in markdown and "target=answer" in markdown and "rho_pairs=consecutive" in markdown
    assert (
        "## Paper scale" in markdown
        and "split-half ceiling" in markdown
        and "random-set J over routed units" in markdown
    )
    assert (
        "## Multiplicity" in markdown
        and "J_stab / ceiling" in markdown
        and "R_t null" in markdown
        and "R_t reading" in markdown
        and "verdict (Holm)" in markdown
        and "by finding" in markdown
    )
    assert "σ_rel 10K-600K (the paper's)" in markdown  # reported beside the tested σ_norm
    for figure in ("fig1_jstab.png", "fig2_layer_trajectories.png", "fig3_4_layer_profiles.png", "fig5_ablation.png"):
        assert (report / figure).stat().st_size > 10_000
    run = MiniatureRun(next((cache / "miniature").glob("smoke-*")))
    moe = payload["trajectories"]["moe"][0]
    moe_steps = [
        s for s in (15, 30, 45, 60) if s >= max(run.onset_step("moe"), run.onset_step("dense"))
    ]  # from the shared scale's start on
    assert moe["steps"] == moe_steps and moe["seed"] == 0
    assert len(moe["jstab_ffn"]["values"]) == len(moe_steps) - 1
    assert len(list((cache / "records").glob("*.pt"))) == len(attributed(cache)) < 8  # not the 4 checkpoints × 2 models
    versions = payload["context"]["versions"]
    assert versions["torch"] == torch.__version__ and re.fullmatch(r"\d+\.\d+\.\d+\+[0-9a-f]{12}", versions["code"])
    training = payload["context"]["miniature"]
    data = evaluation_set()
    for family in ("moe", "dense"):
        assert training[family]["0"]["hit_at_10"] == {str(s): v for s, v in run.hit_at_10(family).items()}
        last = load_model(run.series(family).checkpoints[-1].source)
        top1 = last_position_logits(last, encode_prompts(last.tokenizer, data["prompt"])).argmax(-1)
        expected = (top1 == target_token_ids(last.tokenizer, data["object"])).double().mean().item()
        assert training[family]["0"]["final_hit_at_1"] == pytest.approx(expected)
        assert 0 < training[family]["0"]["prior_baseline_hit_at_1"] < training[family]["0"]["prior_baseline_hit_at_10"]
        assert (
            list(training[family]["0"]["hit_at_10"]) == ["15", "30", "45", "60"]
            and training[family]["0"]["total_steps"] == 60
        )
        assert training[family]["0"]["onset_step"] == run.onset_step(family)
        assert training[family]["0"]["prior_baseline_hit_at_10"] == run.prior_baseline_hit_at_10
        assert training[family]["0"]["training_precision"] == "float32"  # the smoke preset's
    assert (
        (report / "fig0_training.png").stat().st_size > 10_000
        and "## Training" in markdown
        and "- trained in float32\n" in markdown
    )
    machine = payload["context"]["machine"]
    assert machine["cpu"] == cpu_model() and machine["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert f"cpu {cpu_model()}" in markdown and "compare its verdicts with the seed spread" in markdown
    assert all(r["meta"]["machine"]["cpu"] == cpu_model() for r in records_by_checkpoint(cache).values())
    assert "claims vs measured" in done.stdout
    assert sum(1 for line in done.stdout.splitlines() if line.startswith("claim ")) == len(EVERY_TEST)


def test_rerun_reuses_the_cache(first_run, pytester):
    _, cache, report = first_run
    before = record_files(cache)
    assert len(before) == len(attributed(cache))
    result = run_claims(pytester, cache, report)
    assert result.ret in (0, 1)
    assert record_files(cache) == before  # nothing recomputed or rewritten


def test_k_moe_runs_the_moe_side_without_the_dense_series(first_run, tmp_path, pytester):
    _, first_cache, _ = first_run
    cache = cache_with_the_built_run(first_cache, tmp_path / "cache")
    for dense in (cache / "miniature").glob("smoke-*/dense"):
        shutil.rmtree(dense)
    report = pytester.path / "moe-report"
    result = run_claims(pytester, cache, report, "-k", "moe")
    assert {c["test_id"] for c in json.loads((report / "claims.json").read_text())["claims"]} == MOE_TESTS
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == len(MOE_TESTS)
    assert not list((cache / "miniature").glob("smoke-*/dense"))  # the dense series was neither built nor loaded
    assert {r["meta"]["family"] for r in records_by_checkpoint(cache).values()} == {"olmoe"}
    assert len(RecordStore(cache).computed_log()) == len(
        attributed(cache)
    )  # the MoE's checkpoints from its onset on, nothing else
    assert "moe's own onset (the other family is not in this run)" in (report / "claims.md").read_text()


def test_k_ablate_selects_the_ablation_claims(first_run, pytester):
    _, cache, report = first_run
    result = run_claims(pytester, cache, report, "-k", "ablate", "--collect-only")
    ids = [line for line in result.outlines if "test_claim[ablate" in line]
    assert len(ids) == sum(1 for c, _ in claim_sides() if c.startswith("ablate")) == 5
    assert not any("stability" in line for line in result.outlines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "nope"], "--suite must be one of miniature, paper"),
        (["--rank-by", "absolute"], "--rank-by must be one of abs, positive"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (
            ["--examples", "1"],
            "--examples must be between 2 (the held-out ablations score one half with the other's set) and 906",
        ),
        (["--examples", "many"], "--examples must be an integer"),
        (["--checkpoints", "15,999"], "--checkpoints [999] are not in the smoke preset"),
        (["--moe-model", "x/y"], "use them with --suite paper"),
        (["--bootstrap", "3"], "--bootstrap must be at least 10"),
        (["--lpi-mode", "second-order"], "--lpi-mode must be one of exact, first-order"),
        (["--margin", "wide"], "--margin must be a number, not 'wide'"),
        (["--margin", "1.5"], "--margin is a fraction of a quantity's range, from 0 to below 1, not 1.5"),
        (["--dense-end", "300k"], "--dense-end must be one of end, 600k"),
    ],
)
def test_bad_options_fail_at_start_up(pytester, tmp_path, args, message):
    result = run_claims(pytester, tmp_path / "cache", tmp_path / "report", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in "\n".join(result.errlines + result.outlines)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "report").exists()


def test_report_command_rebuilds_the_report_from_the_cache_alone(first_run, tmp_path, capsys):
    from claims.cli import main

    _, cache, report = first_run
    args = ["report", "--preset", "smoke", "--cache-dir", str(cache), "--examples", "120", "--bootstrap", "20"]
    assert main([*args, "--report-dir", str(tmp_path / "again")]) == 0
    ran = json.loads((report / "claims.json").read_text())["claims"]
    again = json.loads((tmp_path / "again" / "claims.json").read_text())["claims"]
    assert again == ran
    assert "ffn-concentration-contrast" in capsys.readouterr().out
    assert (
        main([*args[:-2], "--bootstrap", "30", "--report-dir", str(tmp_path / "x")]) == 2
    )  # other options: no records
    assert "has no records for steps" in capsys.readouterr().err


def claims_command(cache: Path, report: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "claims"),
        "--preset",
        "smoke",
        "--cache-dir",
        str(cache),
        "--report-dir",
        str(report),
        "--examples",
        "120",
        "--bootstrap",
        "20",
        "-p",
        "no:cacheprovider",
        "-q",
        *args,
    ]


def records_by_checkpoint(cache: Path) -> dict[tuple[str, int], dict]:
    records = [torch.load(p, weights_only=True) for p in (cache / "records").glob("*.pt")]
    return {(r["meta"]["family"], r["meta"]["step"]): r for r in records}


def assert_same_records(cache: Path, reference: Path) -> None:
    """Bit-identical scores, bootstrap replicates and hits, checkpoint by checkpoint."""
    ours, theirs = records_by_checkpoint(cache), records_by_checkpoint(reference)
    assert ours.keys() == theirs.keys() and len(ours) == len(attributed(reference))
    for checkpoint, record in ours.items():
        for name, value in record.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, theirs[checkpoint][name]), (checkpoint, name)
        assert all(torch.equal(v, theirs[checkpoint]["hits"][k]) for k, v in record["hits"].items())


def same_claims(report: Path, reference: Path) -> bool:
    ours, theirs = (json.loads((r / "claims.json").read_text()) for r in (report, reference))
    return ours["claims"] == theirs["claims"] and ours["trajectories"] == theirs["trajectories"]


def leftovers(cache: Path) -> list[str]:
    return sorted(
        str(p.relative_to(cache))
        for p in cache.rglob("*")
        if p.name.startswith(TMP_PREFIX) or p.suffix in (".lock", ".lease", ".break") or ".lease.new-" in p.name
    )


def cache_with_the_built_run(first_cache: Path, cache: Path) -> Path:
    shutil.copytree(first_cache / "miniature", cache / "miniature")
    return cache


def test_sigkill_in_the_middle_of_a_record_then_rerun_gives_the_uninterrupted_results(first_run, tmp_path):
    _, first_cache, first_report = first_run
    cache, report = cache_with_the_built_run(first_cache, tmp_path / "cache"), tmp_path / "report"
    command = claims_command(cache, report)
    run = subprocess.Popen(
        command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    log = cache / "records" / "computed.log"
    deadline = time.time() + 300

    def in_the_middle() -> bool:  # one record stored and the next one's lease held: its computation under way
        leases = list((cache / "records").glob("*.lease")) if (cache / "records").is_dir() else []
        return log.exists() and log.read_text().count("\n") >= 1 and bool(leases)

    while not in_the_middle() and time.time() < deadline and run.poll() is None:
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL
    assert len(records_by_checkpoint(cache)) < len(attributed(cache)) and any(
        p.suffix == ".lease" for p in (cache / "records").iterdir()
    )

    again = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert again.returncode in (0, 1), again.stdout[-3000:]
    assert_same_records(cache, first_cache)
    assert same_claims(report, first_report)
    assert leftovers(cache) == []
    keys = [key for key, _, _ in RecordStore(cache).computed_log()]
    assert (
        len(keys) == len(set(keys)) == len(attributed(cache))
    )  # the interrupted record was computed once, by the rerun


def test_two_workers_compute_each_checkpoint_once_with_the_one_process_results(first_run, tmp_path):
    _, first_cache, first_report = first_run
    cache, report = cache_with_the_built_run(first_cache, tmp_path / "cache"), tmp_path / "report"
    done = subprocess.run(
        claims_command(cache, report, "-n", "2"), cwd=tmp_path, env=ENV, capture_output=True, text=True
    )
    assert done.returncode in (0, 1), done.stdout[-3000:]
    store = RecordStore(cache)
    log = store.computed_log()
    assert len(log) == len({key for key, _, _ in log}) == len(attributed(cache))  # every checkpoint exactly once
    assert {worker for _, _, worker in log} <= {"gw0", "gw1"}
    for key, digest, _ in log:
        assert hashlib.sha256(store.path(key).read_bytes()).hexdigest() == digest  # nothing corrupted
    assert_same_records(cache, first_cache)  # -n 2 (one thread each) == -n 0 (two threads), bit for bit
    assert same_claims(report, first_report)
    assert leftovers(cache) == []


def test_non_finite_scores_are_reported_with_the_layer_never_as_a_number(first_run, tmp_path):
    _, first_cache, _ = first_run
    cache, report = cache_with_the_built_run(first_cache, tmp_path / "cache"), tmp_path / "report"
    weights = next((cache / "miniature").glob("smoke-*/moe/seed0/step45/model.safetensors"))
    tensors = load_file(weights)
    tensors["model.layers.1.mlp.experts.0.down_proj.weight"][0, 0] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    done = subprocess.run(claims_command(cache, report), cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert done.returncode == 1
    assert "INTERNALERROR" not in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr
    assert leftovers(cache) == []
    payload = json.loads((report / "claims.json").read_text())
    moe_ids = {f"{c}-{s}" for c, s in claim_sides() if s != "dense"}
    assert set(payload["context"]["not_measured"]) == moe_ids
    assert all(
        "non-finite Gated-LPI scores" in reason and "model.layers.1.mlp.experts.down_proj" in reason
        for reason in payload["context"]["not_measured"].values()
    )
    assert {c["side"] for c in payload["claims"]} == {"dense"} and payload["trajectories"].keys() == {"dense"}
    markdown = (report / "claims.md").read_text()
    table_part = markdown.split("## Notes")[0]
    assert "nan" not in table_part.lower() and "## Not measured" in markdown and "step45" in markdown
    assert sum(f"{NOT_MEASURED}: " in line for line in done.stdout.splitlines()) >= len(moe_ids)


def test_first_order_mode_is_named_beside_every_number(first_run, tmp_path):
    _, first_cache, first_report = first_run
    cache, report = cache_with_the_built_run(first_cache, tmp_path / "cache"), tmp_path / "report"
    done = subprocess.run(
        claims_command(cache, report, "--lpi-mode", "first-order", "-k", "concentration"),
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 1), done.stdout[-3000:]
    claims = json.loads((report / "claims.json").read_text())["claims"]
    assert len(claims) == 3 and {c["scores"] for c in claims} == {"first-order"}
    assert {c["scores"] for c in json.loads((first_report / "claims.json").read_text())["claims"]} == {"exact"}
    markdown = (report / "claims.md").read_text()
    assert "Scores: first-order approximation of Gated-LPI" in markdown and "| first-order |" in markdown
    exact, first = records_by_checkpoint(first_cache), records_by_checkpoint(cache)
    assert first.keys() == exact.keys() and all(r["meta"]["options"]["mode"] == "first-order" for r in first.values())
    assert not torch.equal(first[("olmoe", 60)]["ffn"], exact[("olmoe", 60)]["ffn"])
    assert torch.equal(first[("olmoe", 60)]["ffn_layer"], exact[("olmoe", 60)]["ffn_layer"])  # layer scores stay exact


def test_every_reading_option_reaches_the_records_and_the_report(first_run, tmp_path):
    """--target predicted, --st-rank mean-abs, --attn-positions each, --rank-by positive and
    --rho-pairs all, end to end."""
    _, first_cache, _ = first_run
    cache, report = cache_with_the_built_run(first_cache, tmp_path / "cache"), tmp_path / "report"
    readings = [
        "--target",
        "predicted",
        "--st-rank",
        "mean-abs",
        "--attn-positions",
        "each",
        "--rank-by",
        "positive",
        "--rho-pairs",
        "all",
    ]
    done = subprocess.run(
        claims_command(cache, report, *readings, "-k", "stability and moe"),
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    markdown = (report / "claims.md").read_text()
    assert "rank_by=positive, target=predicted, st_rank=mean-abs, attn_positions=each, rho_pairs=all" in markdown
    exact, read = records_by_checkpoint(first_cache), records_by_checkpoint(cache)
    moe_onset = MiniatureRun(next((cache / "miniature").glob("smoke-*"))).onset_step("moe")
    assert {k for k in read if k[0] == "olmoe"} == {
        ("olmoe", s) for s in (15, 30, 45, 60) if s >= moe_onset
    }  # a MoE-only run: its own onset on
    record, plain = read[("olmoe", 60)], exact[("olmoe", 60)]
    assert record["meta"]["options"] == {
        **plain["meta"]["options"],
        "target": "predicted",
        "st_rank": "mean-abs",
        "attn_positions": "each",
        "rank_by": "positive",
    }
    config = SuiteConfig(preset="smoke", examples=120)
    data = config.data()
    lm = load_model(next((cache / "miniature").glob("smoke-*/moe/seed0/step60")))
    top1 = last_position_logits(lm, encode_prompts(lm.tokenizer, data.prompts)).argmax(-1)
    assert torch.equal(record["target_ids"], top1)  # the model's own prediction was attributed
    assert torch.equal(plain["target_ids"], target_token_ids(lm.tokenizer, data.answers))
    assert torch.equal(record["hits"]["base"], plain["hits"]["base"])  # HIT@10 is always of the answer
    assert (record["st_ffn"] >= 0).all() and (
        record["st_ffn"] >= record["ffn"].abs() - 1e-6
    ).all()  # mean |I| ≥ |mean I|
    assert not torch.allclose(record["attn"], plain["attn"])


def test_a_series_below_the_prior_baseline_is_flagged():
    from claims.reporting.table import facts_over_priors

    training = {
        "moe": {"0": {"final_hit_at_1": 0.25, "prior_baseline_hit_at_1": 0.19}},
        "dense": {"0": {"final_hit_at_1": 0.45, "prior_baseline_hit_at_1": 0.19}},
    }
    values, warning = facts_over_priors(training)
    assert values == "final HIT@1 (prior-only 0.190): moe seed 0 0.250, dense seed 0 0.450"
    assert "(moe seed 0 +0.060)" in warning and "dense" not in warning
    training["moe"]["0"]["final_hit_at_1"] = 0.39
    assert len(facts_over_priors(training)) == 1
    training["moe"]["0"]["prior_baseline_hit_at_1"] = training["dense"]["0"]["prior_baseline_hit_at_1"] = None
    assert facts_over_priors(training) == []


def test_progress_lines_show_each_build_and_record_while_it_runs(first_run):
    """Under output capture and -q: a line when each series starts training and is built, and when each
    record starts and is stored, all before the first verdict; no bars (they refresh every 0.2 s here)."""
    done, cache, _ = first_run
    steps = {f: [s for g, s in attributed(cache) if g == f] for f in ("moe", "dense")}
    lines = done.stdout.splitlines()
    first_verdict = next(i for i, line in enumerate(lines) if line.startswith("claim "))
    progress = [line for line in lines[:first_verdict] if line.startswith("lpi-claims: ")]
    for family in ("moe", "dense"):
        assert (
            f"lpi-claims: miniature smoke {family} seed 0: training 60 steps in float32, then HIT@10 at 4 checkpoints"
            in progress
        )
        assert any(
            re.fullmatch(rf"lpi-claims: miniature smoke {family} seed 0: built in \d+ s", line) for line in progress
        )
        for step in steps[family]:
            assert f"lpi-claims: record {family}/seed0/step{step}: computing (120 examples)" in progress
            assert any(
                re.fullmatch(rf"lpi-claims: record {family}/seed0/step{step}: stored in \d+ s", line)
                for line in progress
            )
    assert len(progress) == 2 * 2 + 2 * len(attributed(cache))  # one line per step start and end, nothing else


def test_progress_of_xdist_workers_reaches_the_controller_in_a_real_terminal(first_run, tmp_path):
    import pty

    _, first_cache, _ = first_run
    cache, report = cache_with_the_built_run(first_cache, tmp_path / "cache"), tmp_path / "report"
    controller, terminal = pty.openpty()
    env = {**ENV, "LPI_CLAIMS_PROGRESS_SECONDS": "0.2"}
    env.pop("TQDM_DISABLE")
    command = claims_command(cache, report, "-n", "2", "-v")  # -q -v: the default verbosity, bars shown
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closes when the run ends
            break
        if not chunk:
            break
        output += chunk
    run.wait()
    os.close(controller)
    text = output.decode(errors="replace").replace("\r\n", "\n")
    assert run.returncode in (0, 1), text[-3000:]
    stored = re.findall(r"lpi-claims: \[gw[01]\] record (moe|dense)/seed0/step(\d+): stored in \d+ s", text)
    assert sorted(stored) == sorted((f, str(s)) for f, s in attributed(cache))  # each once, by a worker
    assert text.index("lpi-claims: [gw") < text.index("claims vs measured")
    bars = re.findall(r"lpi-claims: \[gw[01]\] (forward|attribute): +(\d+)%\|[^|\n]*\| (\d+)/(\d+)", text)
    # running bars, as lines (a bar's last refresh may come at n == total, after its last item's mininterval)
    assert bars and any(int(done) < int(total) for _, _, done, total in bars), text[-3000:]
    assert all(int(done) <= int(total) for _, _, done, total in bars)
    assert {name for name, *_ in bars} <= {"forward", "attribute"}


FAULT_PLUGIN = '''
import errno
import io
import os

import claims.storage.atomic

ERRNO = errno.{name}


class HalfWritten(io.FileIO):
    """A file on a device that fails after half a record: the write raises {name} midway."""

    def write(self, data):
        super().write(bytes(data)[: len(data) // 2])
        raise OSError(ERRNO, "{message}")


def pytest_configure(config):
    def fake_open(path, mode="r", *args, **kwargs):
        temporary_record = os.path.basename(path).startswith(claims.storage.atomic.TMP_PREFIX) \
and ".pt-" in os.path.basename(path)
        return HalfWritten(path, "wb") if temporary_record and mode == "wb" else open(path, mode, *args, **kwargs)

    claims.storage.atomic.open = fake_open  # shadows the builtin inside claims.storage.atomic only
'''


@pytest.mark.parametrize("name, message", [("ENOSPC", "No space left on device"), ("EROFS", "Read-only file system")])
def test_a_full_or_read_only_cache_fails_the_claims_with_the_fix_and_leaves_nothing(first_run, tmp_path, name, message):
    _, first_cache, _ = first_run
    cache, report = cache_with_the_built_run(first_cache, tmp_path / "cache"), tmp_path / "report"
    (tmp_path / "faultplugin.py").write_text(FAULT_PLUGIN.format(name=name, message=message))
    env = {**ENV, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ENV.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        claims_command(cache, report, "-p", "faultplugin"), cwd=tmp_path, env=env, capture_output=True, text=True
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "INTERNALERROR" not in output and "Traceback" not in output, output[-3000:]
    reasons = json.loads((report / "claims.json").read_text())["context"]["not_measured"]
    assert set(reasons) == EVERY_TEST
    assert all(
        f"cannot write to the cache {cache / 'records'}: {message}" in r and "--cache-dir" in r
        for r in reasons.values()
    )
    assert sorted(p.name for p in (cache / "records").iterdir()) == []  # no record, no temporary, no lock


def test_sigint_during_a_record_then_rerun_gives_the_uninterrupted_results(first_run, tmp_path):
    _, first_cache, first_report = first_run
    cache, report = cache_with_the_built_run(first_cache, tmp_path / "cache"), tmp_path / "report"
    command = claims_command(cache, report)
    # Ctrl-C's disposition, whatever this process inherited (a shell's background job ignores SIGINT,
    # and so would its child)
    default_sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    run = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    seen = []
    for line in run.stdout:  # the progress line says when a record is under way
        seen.append(line)
        if re.search(r"record moe/seed0/step\d+: computing", line):
            run.send_signal(signal.SIGINT)
            break
    seen += run.stdout.readlines()
    run.wait()
    output = "".join(seen)
    assert run.returncode == 2 and "KeyboardInterrupt" in output and "INTERNALERROR" not in output, output[-3000:]
    assert leftovers(cache) == []  # the lock released, no temporary left
    again = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert again.returncode in (0, 1), again.stdout[-3000:]
    assert_same_records(cache, first_cache)
    assert same_claims(report, first_report)


SMOKE_OPTIONS = ["--preset", "smoke", "--examples", "120", "--bootstrap", "20"]


def records_command(cache: Path, jobs: Path, *args: str) -> int:
    from claims.cli import main

    return main(["records", *SMOKE_OPTIONS, "--cache-dir", str(cache), "--log-dir", str(jobs), *args])


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_records_command_computes_each_record_once_and_pytest_claims_then_computes_none(first_run, tmp_path, executor):
    _, first_cache, first_report = first_run
    cache = cache_with_the_built_run(first_cache, tmp_path / "cache")
    assert records_command(cache, tmp_path / "jobs", "--executor", executor, "--workers", "2") == 0
    log = RecordStore(cache).computed_log()
    assert len(log) == len({key for key, _, _ in log}) == len(attributed(cache))
    assert_same_records(cache, first_cache)
    done = subprocess.run(
        claims_command(cache, tmp_path / "report"), cwd=tmp_path, env=ENV, capture_output=True, text=True
    )
    assert done.returncode in (0, 1), done.stdout[-3000:]
    assert RecordStore(cache).computed_log() == log  # the claims run computed nothing
    assert same_claims(tmp_path / "report", first_report)
    assert leftovers(cache) == []


def test_shards_split_the_checkpoints_and_merge_into_the_one_run_cache(first_run, tmp_path, capsys):
    from claims.cli import main

    _, first_cache, _ = first_run
    shards = [cache_with_the_built_run(first_cache, tmp_path / f"shard{i}") for i in (1, 2)]
    for i, cache in enumerate(shards, 1):
        assert records_command(cache, tmp_path / "jobs", "--executor", "debug", "--shard", f"{i}/2") == 0
    keys = [{p.stem for p in (cache / "records").glob("*.pt")} for cache in shards]
    records = len(attributed(first_cache))
    assert sorted(map(len, keys)) == [records // 2, records - records // 2] and not keys[0] & keys[1]
    merged = tmp_path / "merged"
    assert main(["merge", str(shards[0]), str(shards[1]), "--cache-dir", str(merged)]) == 0
    assert f"{records} records copied, 0 already there" in capsys.readouterr().out
    assert_same_records(merged, first_cache)
    assert main(["report", *SMOKE_OPTIONS, "--cache-dir", str(merged), "--report-dir", str(tmp_path / "report")]) == 0
    assert main(["merge", str(shards[1]), "--cache-dir", str(merged)]) == 0
    assert f"0 records copied, {len(keys[1])} already there" in capsys.readouterr().out

    changed = sorted((shards[1] / "records").glob("*.pt"))[0]
    before = (merged / "records" / changed.name).read_bytes()
    record = torch.load(changed, weights_only=True)
    record["ffn"] = record["ffn"] + 1.0
    torch.save(record, changed)
    assert main(["merge", str(shards[1]), "--cache-dir", str(merged)]) == 2
    err = capsys.readouterr().err
    assert changed.stem in err and "Nothing was copied" in err
    assert (merged / "records" / changed.name).read_bytes() == before  # never overwritten


def test_shard_slices_are_disjoint_deterministic_and_cover_every_task():
    from claims.running.executors import parse_shard, shard

    tasks = list(range(13))
    slices = [shard(tasks, i, 4) for i in range(1, 5)]
    assert sorted(sum(slices, [])) == tasks and slices[0] == [0, 4, 8, 12] and shard(tasks, 1, 4) == slices[0]
    assert parse_shard("3/4") == (3, 4)
    for bad in ("0/4", "5/4", "a/b", "3"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_slurm_submission_is_one_array_with_the_partition_gpus_time_and_parallelism_asked_for(tmp_path):
    from submitit.slurm.test_slurm import mocked_slurm

    from claims.fixtures.series import Checkpoint
    from claims.running.executors import RecordTask, SlurmOptions, make_executor, submit

    config = SuiteConfig(preset="smoke", cache_dir=str(tmp_path / "cache"))
    tasks = [RecordTask("moe", 0, Checkpoint(step, "unused")) for step in range(1, 9)]
    options = SlurmOptions(
        partition="gpu", gpus_per_task=1, array_parallelism=3, timeout_min=90, extra={"account": "lab"}
    )
    with mocked_slurm():
        jobs = submit(make_executor("slurm", tmp_path / "jobs", options), "slurm", config, tasks, workers=2)
    assert list(jobs) == [t.label for t in tasks] and len({job.job_id.split("_")[0] for job in jobs.values()}) == 1
    (script,) = (tmp_path / "jobs").glob("*submission.sh")
    lines = set(script.read_text().splitlines())
    for expected in (
        "--partition=gpu",
        "--gpus-per-task=1",
        "--array=0-7%3",
        "--time=90",
        "--account=lab",
        "--signal=USR2@90",
    ):
        assert f"#SBATCH {expected}" in lines, expected
    with mocked_slurm():  # --gpu alone asks each task for one GPU
        submit(
            make_executor("slurm", tmp_path / "gpu-jobs", SlurmOptions(), gpu=True),
            "slurm",
            config,
            tasks[:2],
            workers=1,
        )
    (script,) = (tmp_path / "gpu-jobs").glob("*submission.sh")
    assert "#SBATCH --gpus-per-task=1" in script.read_text().splitlines()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is visible"):
            make_executor("local", tmp_path / "local-jobs", gpu=True)


class OnsetsOnly:
    """A miniature run as scale_anchor reads it: {(family, seed): onset step} of the built series."""

    def __init__(self, onsets: dict[tuple[str, int], int | None]) -> None:
        self.onsets = onsets

    def is_built(self, family: str, seed: int) -> bool:
        return (family, seed) in self.onsets

    def onset_step(self, family: str, seed: int = 0) -> int | None:
        return self.onsets[(family, seed)]


def test_a_miniature_series_is_attributed_from_the_start_of_its_shared_paper_scale_on():
    from claims.running.suite import attributed_steps, scale_anchor
    from claims.statistics.windows import shared_scales

    steps = [24, 48, 72, 96, 120, 150, 180, 240, 1200]
    assert attributed_steps(steps, 72) == [72, 96, 120, 150, 180, 240, 1200]
    assert attributed_steps(steps, 24) == steps and attributed_steps(steps, None) == steps
    assert attributed_steps(steps, 1200) == steps  # one checkpoint from onset on: no pair to compare, so all of them
    both = ("moe", "dense")
    run = OnsetsOnly({("moe", 0): 150, ("dense", 0): 72, ("dense", 1): 48, ("moe", 2): None, ("dense", 2): 96})
    assert scale_anchor(run, "dense", 0, both) == scale_anchor(run, "moe", 0, both) == 150  # the later onset, for both
    assert scale_anchor(run, "dense", 0, ("dense",)) == 72  # a dense-only run: its own onset
    assert scale_anchor(run, "dense", 1, both) == 48  # the MoE of seed 1 is not built yet: its own, which is no later
    assert (
        scale_anchor(run, "dense", 2, both) == 96 and scale_anchor(run, "moe", 2, both) is None
    )  # no MoE onset: each its own
    # the anchor is where claims.statistics.windows starts the paper scale: no checkpoint it maps is
    # left out, every one left out is unmapped
    for families in (both, ("dense",)):
        onsets = {f: {0: run.onset_step(f, 0)} for f in families}
        scales = shared_scales(onsets, {f: {0: steps} for f in families}, {f: 1200 for f in families})
        for family in families:
            mapped = [s for s, p in zip(steps, scales[(family, 0)].paper_steps) if p is not None]
            assert mapped == attributed_steps(steps, scale_anchor(run, family, 0, families))


def test_the_checkpoints_before_onset_that_are_not_attributed_change_no_claim(first_run):
    """The records a run skips (before the later of the two families' onsets, where their shared
    paper scale starts) computed here, not stored: every claim side evaluates to the same numbers,
    intervals, verdicts and checkpoints with them or without."""
    from dataclasses import asdict

    from claims.records.compute import compute_record
    from claims.reporting.report import evaluate_all
    from claims.running.measurements import scales_for
    from claims.statistics.measure import measure_series

    _, cache, _ = first_run
    config = SuiteConfig(preset="smoke", cache_dir=str(cache), examples=120, bootstrap=20)
    run, data, options, store = config.miniature(False), config.data(), config.run_options(), RecordStore(cache)
    without, with_all = {}, {}
    for family in ("moe", "dense"):
        series = run.series(family)
        stored = dict(zip(series.steps, store.load_all(series.checkpoints, data, options)[0]))
        skipped = [c for c in series.checkpoints if stored[c.step] is None]
        assert skipped and all(c.step < max(run.onset_step("moe"), run.onset_step("dense")) for c in skipped)
        everything = {**stored, **{c.step: compute_record(c, data, options) for c in skipped}}
        kept = {s: r for s, r in stored.items() if r is not None}
        assert series.onset == run.onset_step(
            family
        )  # the windows' anchor: the onset the build recorded over the 906 prompts
        without[family] = [measure_series(family, series.name, 0, series.total_steps, kept, series.onset)]
        with_all[family] = [
            measure_series(family, series.name, 0, series.total_steps, dict(sorted(everything.items())), series.onset)
        ]
    results = [evaluate_all(config, measured, scales_for(config, measured)) for measured in (without, with_all)]
    as_text = lambda results: [json.dumps(asdict(r), default=str) for r in results]  # noqa: E731 (NaN equal to NaN)
    assert as_text(results[0]) == as_text(results[1])
    assert len(results[0]) == len(EVERY_TEST)


def test_built_checkpoints_are_the_finished_series_at_the_chosen_checkpoints_and_are_never_built(tmp_path):
    from claims.fixtures.miniature.build import build_series
    from claims.running.suite import attributed_steps

    config = SuiteConfig(preset="smoke", cache_dir=str(tmp_path / "cache"), checkpoints=(15, 30, 60), seeds=2)
    assert config.built_checkpoints(("moe", "dense")) == []  # nothing built, and asking builds nothing
    assert not list((tmp_path / "cache").rglob("series.json"))
    run = config.miniature(True)
    build_series(run, "dense", 1)
    labels = lambda checkpoints: [c.label for c in checkpoints]  # noqa: E731
    own = attributed_steps([15, 30, 60], run.onset_step("dense", 1))
    # its MoE partner is not built, so its scale may yet start later: latest first, from its own onset on
    assert labels(config.built_checkpoints(("moe", "dense"))) == [f"dense/seed1/step{s}" for s in reversed(own)]
    build_series(run, "moe", 1)
    shared = attributed_steps([15, 30, 60], max(run.onset_step("moe", 1), run.onset_step("dense", 1)))
    assert labels(config.built_checkpoints(("moe", "dense"))) == [
        f"{f}/seed1/step{s}" for f in ("moe", "dense") for s in shared
    ]
    assert labels(config.built_checkpoints(("moe",))) == [
        f"moe/seed1/step{s}" for s in attributed_steps([15, 30, 60], run.onset_step("moe", 1))
    ]
    assert SuiteConfig(suite="paper", cache_dir=str(tmp_path / "cache")).built_checkpoints(("moe", "dense")) == []


def test_a_failed_record_job_is_reported_with_its_log_and_error(tmp_path):
    import io

    from claims.fixtures.series import Checkpoint
    from claims.running.executors import RecordTask, make_executor, submit, wait

    config = SuiteConfig(preset="smoke", cache_dir=str(tmp_path / "cache"), examples=10, bootstrap=10)
    tasks = [RecordTask("moe", 0, Checkpoint(5, str(tmp_path / "no-such-checkpoint")))]
    out = io.StringIO()
    failed = wait(
        submit(make_executor("debug", tmp_path / "jobs"), "debug", config, tasks, workers=1), out=out, poll_s=0
    )
    assert list(failed) == ["moe/seed0/step5"]
    assert "no-such-checkpoint" in failed["moe/seed0/step5"] and ".err" in failed["moe/seed0/step5"]
    assert "0 done, 0 running, 1 failed, 0 waiting" in out.getvalue()


def test_load_series_holds_each_records_numbers_at_named_coordinates_and_exports_round_trip(
    first_run, tmp_path, capsys
):
    import pandas as pd
    import xarray as xr

    from claims.cli import main
    from claims.exploring.labelled import load_series
    from claims.records.store import record_key

    _, cache, _ = first_run
    config = SuiteConfig(preset="smoke", cache_dir=str(cache), examples=120, bootstrap=20)
    ds = load_series(config, "moe")
    series = config.series("moe", build=False)[0]
    record = torch.load(
        RecordStore(cache).path(record_key(series.at(45), config.data(), config.run_options(), cache)),
        weights_only=True,
    )
    experts, neurons = ds.sizes["expert"], ds.sizes["neuron"]
    for layer, expert, neuron in [(0, 0, 0), (3, experts - 1, neurons - 1), (2, 1, 5)]:
        by_hand = record["ffn"][layer, expert * neurons + neuron].item()
        assert ds.ffn.sel(seed=0, step=45, layer=layer, expert=expert, neuron=neuron).item() == by_hand
    dims = ds.sizes["dim"]
    assert ds.attn.sel(seed=0, step=45, layer=1, head=1, dim=3).item() == record["attn"][1, dims + 3].item()
    assert (
        ds.hit_at_10.sel(seed=0, step=45, ablation="top10-heads").values.tolist()
        == record["hits"]["top10-heads"].int().tolist()
    )
    assert (
        ds.hit_at_1.sel(seed=0, step=45, ablation="held-out/top1pct-ffn").values.tolist()
        == record["hits_at_1"]["held-out/top1pct-ffn"].int().tolist()
    )
    assert ds.ffn_module.sel(layer=2, expert=1).item() == "model.layers.2.mlp.experts.1"
    assert ds.attrs["family"] == "moe" and ds.attrs["examples"] == 120 and ds.attrs["bootstrap"] == 20

    options = [
        "--preset",
        "smoke",
        "--cache-dir",
        str(cache),
        "--examples",
        "120",
        "--bootstrap",
        "20",
        "--family",
        "moe",
    ]
    assert main(["export", *options, "--out", str(tmp_path / "nc")]) == 0
    xr.testing.assert_equal(xr.load_dataset(tmp_path / "nc" / "moe.nc"), ds)
    assert main(["export", *options, "--format", "parquet", "--out", str(tmp_path / "pq")]) == 0
    assert (
        main(["export", *options, "--format", "parquet", "--out", str(tmp_path / "pq")]) == 0
    )  # its own export: replaced
    shown = capsys.readouterr()
    assert "wrote" in shown.out and f"export: writing 7 parquet files to {tmp_path / 'pq'}" in shown.err
    assert main(["export", *options, "--format", "parquet", "--out", str(tmp_path / "pq"), "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q: no progress
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["export", *options, "--out", str(tmp_path / "mine")]) == 2
    assert (
        "not written by lpi-claims export" in capsys.readouterr().err
        and (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    )
    table = pd.read_parquet(tmp_path / "pq" / "moe.ffn.parquet")
    assert len(table) == ds.ffn.size
    row = table[(table.step == 45) & (table.layer == 2) & (table.expert == 1) & (table.neuron == 5)]
    assert row.ffn.item() == ds.ffn.sel(seed=0, step=45, layer=2, expert=1, neuron=5).item()
    assert row.ffn_module.item() == "model.layers.2.mlp.experts.1"
    assert main(["export", *options[:-4], "--examples", "60", "--family", "moe", "--out", str(tmp_path / "none")]) == 2
    assert "has no records for steps" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_units_drill_down_equals_a_hand_ranking_of_the_records(first_run, tmp_path, capsys):
    from claims.cli import main
    from claims.records.store import record_key
    from lpi_core import attribute

    _, cache, _ = first_run
    options = ["--preset", "smoke", "--cache-dir", str(cache), "--examples", "120", "--bootstrap", "20"]
    assert (
        main(
            [
                "units",
                *options,
                "--family",
                "moe",
                "--top",
                "5",
                "--examples-per-unit",
                "3",
                "--report-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    found = json.loads((tmp_path / "units-moe-ffn.json").read_text())
    config = SuiteConfig(preset="smoke", cache_dir=str(cache), examples=120, bootstrap=20)
    series = config.series("moe", build=False)[0]
    records = {
        c.step: torch.load(
            RecordStore(cache).path(record_key(c, config.data(), config.run_options(), cache)), weights_only=True
        )
        for c in series.checkpoints
    }
    last = records[series.steps[-1]]["ffn"]  # [layers, experts * neurons]
    per_layer = last.shape[1]
    hand = torch.argsort(-last.abs().flatten(), stable=True)[:5].tolist()  # --rank-by abs: the largest |mean I|
    lm = series.checkpoints[-1].load()
    ffn_dim = lm.adapter.ffn_dim
    assert [u["layer"] * per_layer + u["expert"] * ffn_dim + u["neuron"] for u in found["units"]] == hand
    top = found["units"][0]
    column = top["layer"], top["expert"] * ffn_dim + top["neuron"]
    assert [top["importance"][str(s)] for s in series.steps] == [records[s]["ffn"][column].item() for s in series.steps]
    cutoff = max(1, round(0.01 * last.numel()))
    entered = next(
        s
        for s in series.steps
        if column[0] * per_layer + column[1]
        in torch.argsort(-records[s]["ffn"].abs().flatten(), stable=True)[:cutoff].tolist()
    )
    assert top["entered_top1pct"] == {"0": entered}
    data = config.data()
    from lpi_core.routing import routing_frequency

    assert top["routing"][str(series.steps[-1])] == pytest.approx(
        routing_frequency(lm, data.prompts)[top["layer"], top["expert"]].item()
    )
    per_example = attribute(lm, data.prompts, targets=data.answers, reduce="none").ffn[
        :, top["layer"], top["expert"], top["neuron"]
    ]
    assert [e["lpi"] for e in top["top_examples"]] == pytest.approx(
        torch.sort(per_example, descending=True).values[:3].tolist(), abs=1e-6
    )
    assert per_example.mean().item() == pytest.approx(
        top["score"], abs=1e-5
    )  # the record's mean, recomputed per example
    assert top["module"] in capsys.readouterr().out


def chromium() -> str:
    """Debian's Chromium (.ci/run installs it), or skip naming what is missing."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium (as .ci/run does) to run the browser test")
    return path


def test_html_report_in_a_headless_browser_loads_offline_lists_every_claim_and_shows_a_claims_figure_on_click(
    first_run, tmp_path
):
    from playwright.sync_api import sync_playwright

    _, _, report = first_run
    claims = json.loads((report / "claims.json").read_text())["claims"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        errors, outside = [], []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith("file:")
                else (outside.append(route.request.url), route.abort())
            ),
        )
        page.goto((report / "index.html").as_uri())
        assert [cell.inner_text() for cell in page.locator("td.test").all()] == [c["test_id"] for c in claims]
        assert page.locator("#claim-figure .main-svg").count() == 0
        target = next(c["test_id"] for c in claims if c["claim"] == "ffn-concentration")
        page.click(f'tr.claim[data-test="{target}"] >> nth=0')
        page.wait_for_selector("#claim-figure .main-svg")
        assert page.inner_text("#claim-title") == target
        assert (
            page.locator("#claim-figure .scatterlayer .trace").count() >= 2 * 2
        )  # band and line per family (one seed)
        assert page.locator("#fig-training .main-svg").count() >= 1
        page.screenshot(path=str(tmp_path / "report.png"))
        browser.close()
    assert errors == [] and outside == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_run_stores_each_series_measurements_once_and_a_report_reads_them_unchanged(
    first_run, tmp_path, monkeypatch
):
    """The run leaves one measurement file per series and no lock; reading them back gives bit for bit
    what measuring the records again gives, without measuring; a record rewritten under its key (a
    merge, a recomputation elsewhere) has its series measured anew."""
    import claims.running.measurements
    from claims.records.store import record_key
    from claims.running.measurements import load_family
    from claims.statistics.measure import measure_series
    from tests.helpers import same_measurements

    _, cache, _ = first_run
    config = SuiteConfig(preset="smoke", cache_dir=str(cache), examples=120, bootstrap=20)
    assert len(list((cache / "measurements").glob("*.pt"))) == 2 and not list((cache / "measurements").glob("*.lock"))
    data, options, store = config.data(), config.run_options(), RecordStore(cache)
    for family in ("moe", "dense"):
        series = config.miniature(False).series(family)
        kept = {
            s: r for s, r in zip(series.steps, store.load_all(series.checkpoints, data, options)[0]) if r is not None
        }
        fresh = [measure_series(family, series.name, 0, series.total_steps, kept, series.onset)]
        with monkeypatch.context() as patched:
            patched.setattr(
                claims.running.measurements, "measure_series", lambda *a: pytest.fail("measured again instead of read")
            )
            stored = load_family(config, family, compute=False)[0]
        assert len(stored) == len(fresh) == 1 and same_measurements(stored[0], fresh[0])
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)  # modification times kept: the stored measurements still apply
    config = SuiteConfig(preset="smoke", cache_dir=str(copy), examples=120, bootstrap=20)
    series = config.miniature(False).series("moe")
    path = RecordStore(copy).path(record_key(series.checkpoints[-1], data, options, copy))
    assert path.exists()
    with monkeypatch.context() as patched:
        patched.setattr(
            claims.running.measurements, "measure_series", lambda *a: pytest.fail("measured again instead of read")
        )
        load_family(config, "dense", compute=False)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    calls = []
    with monkeypatch.context() as patched:
        patched.setattr(
            claims.running.measurements, "measure_series", lambda *a: calls.append(a[1]) or measure_series(*a)
        )
        load_family(config, "moe", compute=False)
        load_family(config, "dense", compute=False)
    assert calls == [series.name]  # the MoE series measured anew; the dense one read
