"""`lpi-claims records --executor slurm` against a real one-node Slurm cluster (Debian's slurm-wlm:
munged, slurmctld and slurmd started by tests/slurm/start.sh under a temporary directory, stopped by
stop.sh through their pid files). No accounting database: job states come from the queue (squeue).

Where Slurm cannot be had (not root, no apt-get, the packages not installable) every test here
skips and says why; a cluster that is installed but does not come up fails, with its logs.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from claims.records.store import RecordStore
from claims.running.executors import RecordTask, make_executor, record_tasks, submit, wait
from claims.running.suite import SuiteConfig
from tests.test_claims_suite import (
    ENV,
    EVERY_TEST,
    SMOKE_OPTIONS,
    attributed,
    cache_with_the_built_run,
    claims_command,
    leftovers,
    records_by_checkpoint,
    records_command,
)

SCRIPTS = Path(__file__).resolve().parent / "slurm"
UNAVAILABLE = 3  # start.sh's exit status where Slurm cannot be installed here


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Slurm cluster of this host's cores, for the module's tests (one per xdist worker:
    its own ports, key and state directory); the path of its slurm.conf."""
    directory = tmp_path_factory.mktemp("slurm")
    started = time.perf_counter()
    done = subprocess.run(["bash", str(SCRIPTS / "start.sh"), str(directory)], capture_output=True, text=True)
    if done.returncode == UNAVAILABLE:
        pytest.skip(f"no Slurm here: {done.stderr.strip()}")
    if done.returncode != 0:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(directory)])
        logs = "".join(
            f"\n--- {name}\n" + "\n".join((directory / name).read_text().splitlines()[-15:])
            for name in ("slurmctld.log", "slurmd.log")
            if (directory / name).exists()
        )
        pytest.fail(f"the Slurm cluster did not start: {done.stderr.strip()}{logs}", pytrace=False)
    print(f"\nslurm: nothing to an idle node in {time.perf_counter() - started:.1f} s")
    pids = [int((directory / name).read_text()) for name in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid")]
    yield directory / "slurm.conf"
    subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(directory)], check=True)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]  # the daemons it started are gone


@pytest.fixture
def slurm(cluster, monkeypatch) -> Path:
    monkeypatch.setenv("SLURM_CONF", str(cluster))
    return cluster


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A cache with the smoke run built and every record computed in this process (submitit's
    debug executor): what the cluster's records must equal bit for bit."""
    cache = tmp_path_factory.mktemp("reference") / "cache"
    assert records_command(cache, cache.parent / "jobs", "--executor", "debug") == 0
    return cache


def slurm_records(cache: Path, jobs: Path, *args: str) -> subprocess.Popen:
    """`lpi-claims records --executor slurm` on the smoke preset, in its own process."""
    command = [sys.executable, "-c", "import sys; from claims.cli import main; sys.exit(main())", "records"]
    command += [*SMOKE_OPTIONS, "--cache-dir", str(cache), "--log-dir", str(jobs), "--executor", "slurm", *args]
    return subprocess.Popen(
        command, cwd=cache.parent, env={**os.environ, "TQDM_DISABLE": "1"}, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen, timeout: float = 420) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def logs(jobs: Path) -> dict[str, str]:
    """Each task's submitit log (stderr and stdout), by file stem `<array>_<task>_0_log`."""
    out: dict[str, str] = {}
    for path in sorted(glob.glob(str(jobs / "*_log.*"))):
        out[Path(path).stem] = out.get(Path(path).stem, "") + Path(path).read_text(errors="replace")
    return out


MOE_PAIR = ("--family", "moe", "--checkpoints", "45,60")  # two tasks: the MoE's last two checkpoints


def moe_pair_config(cache: Path) -> SuiteConfig:
    """The suite `slurm_records(..., *MOE_PAIR)` runs: SMOKE_OPTIONS at the checkpoints of MOE_PAIR."""
    return SuiteConfig(preset="smoke", cache_dir=str(cache), examples=120, bootstrap=20, checkpoints=(45, 60))


def moe_records(cache: Path) -> list[tuple[str, int]]:
    """(family, step) of the records `lpi-claims records` computes with MOE_PAIR."""
    return [("moe", task.checkpoint.step) for task in record_tasks(moe_pair_config(cache), ("moe",))]


def assert_computed_once(cache: Path, records: list[tuple[str, int]]) -> list[tuple[str, str, str]]:
    """Each record in the computed log once, and as many as `records`."""
    log = RecordStore(cache).computed_log()
    assert len(log) == len({key for key, _, _ in log}) == len(records), log
    return log


def assert_records_match(cache: Path, reference: Path, records: list[tuple[str, int]]) -> None:
    """The cache holds as many records as `records`, each bit-identical to the reference's."""
    ours, theirs = records_by_checkpoint(cache), records_by_checkpoint(reference)  # keyed by (adapter family, step)
    assert len(ours) == len(records) and set(ours) <= set(theirs), (sorted(ours), records)
    for checkpoint, record in ours.items():
        for name, value in record.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, theirs[checkpoint][name]), (checkpoint, name)
        for hits in ("hits", "hits_at_1"):
            assert all(torch.equal(v, theirs[checkpoint][hits][k]) for k, v in record[hits].items())


def test_records_as_a_real_array_job_then_pytest_claims_computes_none(slurm, reference, tmp_path):
    cache = cache_with_the_built_run(reference, tmp_path / "cache")
    started = time.perf_counter()
    code, err = finished(slurm_records(cache, tmp_path / "jobs", "--array-parallelism", "2"))
    seconds = time.perf_counter() - started
    assert code == 0, err[-3000:]
    log = assert_computed_once(cache, attributed(cache))
    assert_records_match(cache, reference, attributed(cache))
    (script,) = (tmp_path / "jobs").glob("*submission.sh")
    assert f"#SBATCH --array=0-{len(log) - 1}%2" in script.read_text()  # one array, two tasks at once
    statuses = [line for line in err.splitlines() if line.startswith("records: ")]
    assert any(" 0 done, 2 running" in s for s in statuses), statuses  # the queue's RUNNING, as it was
    assert statuses[-1] == f"records: {len(log)} done, 0 running, 0 failed, 0 waiting"
    print(f"\nslurm: {len(log)} records as one array job, two at a time, in {seconds:.1f} s")

    done = subprocess.run(claims_command(cache, tmp_path / "report"), cwd=tmp_path, env=ENV, capture_output=True)
    assert done.returncode in (0, 1), done.stdout[-3000:]
    assert RecordStore(cache).computed_log() == log  # the claims run computed nothing
    payload = json.loads((tmp_path / "report" / "claims.json").read_text())
    assert {c["test_id"] for c in payload["claims"]} == EVERY_TEST and not payload["context"]["not_measured"]
    assert leftovers(cache) == []


def slurm_task_of(pid: int) -> str | None:
    """`<array>_<task>` of the Slurm array task that process `pid` belongs to, if any."""
    try:
        environ = dict(
            item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
        )
    except OSError:
        return None
    if "SLURM_ARRAY_JOB_ID" not in environ:
        return None
    return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"


def test_a_task_requeued_in_the_middle_of_a_record_resumes_to_the_uninterrupted_records(slurm, reference, tmp_path):
    """`scontrol requeue` while a task holds a record's lease: Slurm kills it (SIGTERM, which
    submitit ignores, then SIGKILL after KillWait: sent here at once, so that the kill lands inside
    a record of a few seconds), the task runs again, takes over the dead task's lease and computes
    the record."""
    cache = cache_with_the_built_run(reference, tmp_path / "cache")
    process = slurm_records(cache, tmp_path / "jobs", "--array-parallelism", "1", *MOE_PAIR)
    requeued, deadline = None, time.monotonic() + 300
    while requeued is None and time.monotonic() < deadline and process.poll() is None:
        for lease in (cache / "records").glob("*.lease"):
            try:
                owner = json.loads(lease.read_text())
            except (OSError, ValueError):
                continue
            task = slurm_task_of(owner["pid"])
            if task is not None:
                subprocess.run(["scontrol", "requeue", task], check=True, capture_output=True)
                os.kill(owner["pid"], signal.SIGKILL)  # Slurm's SIGKILL after KillWait, now: submitit ignores SIGTERM
                requeued = (task, lease.name.removesuffix(".lease"))
                break
        time.sleep(0.05)
    assert requeued is not None, "no task was seen computing a record"
    code, err = finished(process)
    assert code == 0, err[-3000:]
    task, key = requeued
    text = logs(tmp_path / "jobs")[f"{task}_0_log"]
    assert "DUE TO JOB REQUEUE" in text, text[-3000:]
    computing = [line for line in text.splitlines() if line.startswith("record ") and "computing" in line]
    assert len(computing) == 2 and computing[0] == computing[1], text[-3000:]  # started, killed, started again
    assert_computed_once(cache, moe_records(cache))
    assert_records_match(cache, reference, moe_records(cache))
    assert leftovers(cache) == []


def test_a_task_past_its_time_limit_gets_usr2_and_is_requeued(slurm, reference, tmp_path):
    """A task held up past its time limit (another worker holds its record's lease) gets submitit's
    USR2, checkpoints and requeues itself; once the lease is free the requeued task computes the record."""
    cache = cache_with_the_built_run(reference, tmp_path / "cache")
    config = moe_pair_config(cache)
    store = RecordStore(config.cache)
    held = record_tasks(config, ("moe",))[0]
    lease = store.lease(store.key(held.checkpoint, config.data(), config.run_options()))
    assert lease.try_acquire()
    process = slurm_records(cache, tmp_path / "jobs", "--time-limit", "3", *MOE_PAIR)
    deadline, timed_out = time.monotonic() + 240, []
    while not timed_out and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        timed_out = [stem for stem, text in logs(tmp_path / "jobs").items() if "this job is timed-out" in text]
    lease.release()
    assert timed_out, "no task got the time limit's signal"
    code, err = finished(process)
    text = logs(tmp_path / "jobs")[timed_out[0]]
    assert "Caught signal SIGUSR2" in text and "DUE TO JOB REQUEUE" in text, text[-3000:]
    assert code == 0, err[-3000:]
    assert_computed_once(cache, moe_records(cache))
    assert_records_match(cache, reference, moe_records(cache))


def test_two_array_jobs_over_one_cache_compute_each_record_once(slurm, reference, tmp_path):
    cache = cache_with_the_built_run(reference, tmp_path / "cache")
    first, second = (slurm_records(cache, tmp_path / f"jobs{i}", *MOE_PAIR) for i in (1, 2))
    for process in (first, second):
        code, err = finished(process)
        assert code == 0, err[-3000:]
    assert_computed_once(cache, moe_records(cache))
    arrays = {stem.split("_")[0] for i in (1, 2) for stem in logs(tmp_path / f"jobs{i}")}
    assert len(arrays) == 2  # two array jobs ran tasks, side by side on the one cache
    assert_records_match(cache, reference, moe_records(cache))
    assert leftovers(cache) == []


def test_a_failing_task_is_named_with_its_log_and_error_and_the_command_exits_1(slurm, reference, tmp_path):
    cache = cache_with_the_built_run(reference, tmp_path / "cache")
    config = moe_pair_config(cache)
    broken = record_tasks(config, ("moe",))[-1]
    (Path(broken.checkpoint.source) / "model.safetensors").unlink()
    code, err = finished(slurm_records(cache, tmp_path / "jobs", *MOE_PAIR))
    assert code == 1, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("FAILED ")]
    assert line.startswith(f"FAILED {broken.label}: {tmp_path / 'jobs'}") and "_log.err: " in line, line
    assert "model.safetensors" in line or "weights" in line, line
    statuses = [line for line in err.splitlines() if line.startswith("records: ")]
    assert statuses[-1] == f"records: {len(moe_records(cache)) - 1} done, 0 running, 1 failed, 0 waiting"


def test_a_task_that_leaves_the_queue_without_a_result_is_failed(slurm, tmp_path):
    """A task cancelled before it wrote its outcome has no result file; the queue no longer lists it."""
    config = SuiteConfig(preset="smoke", cache_dir=str(tmp_path / "cache"), examples=10, bootstrap=10)
    task = RecordTask("moe", 0, config.series("moe", build=True)[0].checkpoints[0])
    jobs = submit(make_executor("slurm", tmp_path / "jobs"), "slurm", config, [task], workers=1)
    subprocess.run(["scancel", jobs[task.label].job_id], check=True)
    failed = wait(jobs, out=None, poll_s=1)
    assert list(failed) == [task.label] and "left the Slurm queue without a result" in failed[task.label]


def test_a_time_limit_too_short_for_the_requeue_signal_is_refused(tmp_path, capsys):
    assert records_command(tmp_path / "cache", tmp_path / "jobs", "--executor", "slurm", "--time-limit", "2") == 2
    assert "needs at least 3 minutes" in capsys.readouterr().err
