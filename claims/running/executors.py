"""`lpi-claims records`: the records of a suite's checkpoints computed through a submitit executor,
into the cache that `pytest claims` and `lpi-claims report` read.

- `local`: `workers` processes on this machine (submitit's LocalExecutor), each going through every
  checkpoint from its own starting point as xdist workers do; leases keep each record computed once.
- `slurm`: one Slurm array task per checkpoint (submitit's SlurmExecutor), requeued on preemption
  or timeout; a requeued task resumes from the cache.
- `debug`: submitit's in-process executor, one job per checkpoint (for tests and debugging).

Every job computes through `loading.ensure_records` (leases, and --disk-budget streaming), so jobs on
several machines sharing the cache directory never compute a record twice, and a record already
stored is not recomputed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import submitit
from submitit.helpers import Checkpointable

from claims.fixtures.series import Announcer, Checkpoint, silent
from claims.running.measurements import ensure_records
from claims.running.progress import StderrAnnouncer
from claims.running.suite import SuiteConfig

EXECUTORS = ("local", "slurm", "debug")


@dataclass(frozen=True)
class RecordTask:
    """One checkpoint of one series: what a job computes the record of."""

    family: str
    seed: int
    checkpoint: Checkpoint

    @property
    def label(self) -> str:
        return f"{self.family}/seed{self.seed}/step{self.checkpoint.step}"


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_task: int = 0
    array_parallelism: int = 64
    timeout_min: int = 240
    extra: dict[str, str] = field(default_factory=dict)  # more #SBATCH lines: {"account": "abc"} -> --account=abc


def record_tasks(config: SuiteConfig, families: Sequence[str], announce: Announcer = silent) -> list[RecordTask]:
    """Every checkpoint of the families' series, in (family, seed, step) order (miniature series built
    here if missing, `announce` getting their progress lines)."""
    config.build_all(families, announce=announce)
    return [
        RecordTask(family, series.seed, checkpoint)
        for family in families
        for series in config.series(family, build=False, families=families)
        for checkpoint in series.checkpoints
    ]


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' (1 <= i <= N) -> (i, N)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be i/N with whole numbers, e.g. 1/4, not {text!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text}: i must be between 1 and N")
    return index, count


def shard(tasks: Sequence[RecordTask], index: int, count: int) -> list[RecordTask]:
    """The i-th of N deterministic slices (every N-th task from the i-th), so that shards mix families and steps."""
    return list(tasks[index - 1 :: count])


class ComputeRecords(Checkpointable):
    """A job: the records of `tasks` into `config`'s cache, starting `rotate` places in. On preemption
    or timeout submitit requeues the same call, which finds the stored records and computes the rest."""

    def __call__(
        self, config: SuiteConfig, tasks: Sequence[RecordTask], rotate: int = 0, share: int = 1, quiet: bool = False
    ) -> list[str]:
        ensure_records(
            config, [t.checkpoint for t in tasks], rotate=rotate, share=share, announce=StderrAnnouncer(quiet)
        )
        return [t.label for t in tasks]


def make_executor(
    kind: str, folder: Path, slurm: SlurmOptions = SlurmOptions(), gpu: bool = False
) -> submitit.Executor:
    """The submitit executor of `kind`, its logs and pickles under `folder`; with `gpu`, every job
    sees a GPU (submitit hides them from a local job that asks for none)."""
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=7 * 24 * 60, gpus_per_node=_visible_gpus() if gpu else 0)
        return executor
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
    parameters = dict(
        time=slurm.timeout_min,
        ntasks_per_node=1,
        array_parallelism=slurm.array_parallelism,
        additional_parameters=dict(slurm.extra),
    )
    if slurm.partition:
        parameters["partition"] = slurm.partition
    if slurm.gpus_per_task or gpu:
        parameters["gpus_per_task"] = slurm.gpus_per_task or 1
    executor.update_parameters(**parameters)
    return executor


def _visible_gpus() -> int:
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            "--gpu with --executor local: no CUDA device is visible on this machine; drop --gpu or run where one is"
        )
    return torch.cuda.device_count()


def submit(
    executor: submitit.Executor,
    kind: str,
    config: SuiteConfig,
    tasks: Sequence[RecordTask],
    workers: int,
    quiet: bool = False,
) -> dict[str, submitit.Job]:
    """Submit the jobs; a name (a checkpoint's label, or `worker i`) -> its job. Each job's log
    (stderr) gets its progress lines unless `quiet`."""
    compute = ComputeRecords()
    if kind == "local":
        names = [f"worker {i + 1}" for i in range(min(workers, len(tasks)))]
        jobs = [executor.submit(compute, config, list(tasks), i, len(names), quiet) for i in range(len(names))]
        return dict(zip(names, jobs))
    share = (
        executor.parameters.get("array_parallelism", 1) if kind == "slurm" else 1
    )  # tasks at once split --disk-budget
    with executor.batch():  # one array job on Slurm
        jobs = [executor.submit(compute, config, [task], 0, share, quiet) for task in tasks]
    return {task.label: job for task, job in zip(tasks, jobs)}


def queue_states(jobs: Sequence[submitit.Job]) -> dict[str, str] | None:
    """Slurm's live state of each of the jobs still in its queue (`squeue`: job id -> PENDING,
    RUNNING, …; an array task as `<array>_<task>`), or None where squeue cannot answer. Unlike
    submitit's own watcher (sacct), it needs no accounting database."""
    arrays = sorted({job.job_id.split("_")[0] for job in jobs})
    if not arrays:
        return {}
    try:
        done = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i %T", "--jobs", ",".join(arrays)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None  # every job has left the queue
    return dict(line.split()[:2] for line in done.stdout.splitlines() if len(line.split()) >= 2)


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def _error_line(error: BaseException) -> str:
    """The error's last line; for a job that failed on a worker (submitit's FailedJobError, its
    traceback between two rules, then the log paths) the last line of that traceback."""
    text = str(error).strip()
    rule = "-" * 22 + "\n"
    if isinstance(error, submitit.core.utils.FailedJobError) and text.count(rule) >= 2:
        text = text.split(rule)[1].strip()
    lines = text.splitlines()
    return lines[-1] if lines else type(error).__name__


def _finished(job: submitit.Job, queue: dict[str, str] | None) -> bool | None:
    """True once the job's outcome is written, False while it is still to come; None for a Slurm
    job that is neither in the queue nor finished. With the queue at hand a Slurm job is judged by
    it and its result file alone (submitit's done() asks sacct, which needs accounting)."""
    if isinstance(job, submitit.DebugJob):
        return True  # it runs in this process when its outcome is asked for
    if isinstance(job, submitit.SlurmJob) and queue is not None:
        if job.paths.result_pickle.exists():
            return True
        return False if job.job_id in queue else None
    return job.done()


def _state(job: submitit.Job, queue: dict[str, str] | None) -> str | None:
    """The job's state: from the queue for a Slurm job where squeue answered, else submitit's."""
    if isinstance(job, submitit.SlurmJob) and queue is not None:
        return queue.get(job.job_id)
    return job.state


def wait(jobs: dict[str, submitit.Job], out: TextIO | None = sys.stderr, poll_s: float = 5.0) -> dict[str, str]:
    """Wait for every job, printing done / running / failed counts to `out` (None: nowhere) as
    they change; the failed jobs' names -> their log path and error. A Slurm job's state is read
    from the queue (queue_states); one that has left it without a result (cancelled, killed, its
    node lost) has failed."""
    pending, failed, done, shown = dict(jobs), {}, 0, None
    left_queue: set[str] = set()  # Slurm jobs missing from the queue at the last poll, without a result
    while pending:
        queue = queue_states([job for job in pending.values() if isinstance(job, submitit.SlurmJob)])
        for name, job in list(pending.items()):
            finished = _finished(job, queue)
            if finished is None and job.job_id in left_queue:  # gone two polls running: not on its way out
                del pending[name]
                failed[name] = (
                    f"{job.paths.stderr}: left the Slurm queue without a result ({_log_tail(job.paths.stderr)})"
                )
                continue
            if finished is None:
                left_queue.add(job.job_id)
                continue
            if not finished:
                left_queue.discard(job.job_id)  # in the queue again (requeued)
                continue
            error = job.exception()
            del pending[name]
            if error is None:
                done += 1
            else:
                failed[name] = f"{job.paths.stderr}: {_error_line(error)}"
        running = sum(1 for job in pending.values() if _state(job, queue) == "RUNNING")
        status = f"records: {done} done, {running} running, {len(failed)} failed, {len(pending) - running} waiting"
        if status != shown and out is not None:
            print(status, file=out, flush=True)
            shown = status
        if pending:
            time.sleep(poll_s)
    return failed
