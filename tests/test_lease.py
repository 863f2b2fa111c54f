"""Leases (claims/storage/lease.py): one holder at a time across processes, takeover of dead holders only,
and results published once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import claims.storage.lease as lease_module
from claims.storage.atomic import TMP_PREFIX, atomic_write_bytes
from claims.storage.lease import Lease

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from claims.storage.lease import Lease
    from claims.storage.atomic import atomic_write_bytes
    directory, keys = Path(sys.argv[1]), int(sys.argv[2])
    log = os.open(directory / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    while not all((directory / f"{k}.out").exists() for k in range(keys)):
        for k in range(keys):
            lease = Lease(directory / f"{k}.lease", timeout=5, heartbeat=0.5)
            if (directory / f"{k}.out").exists() or not lease.try_acquire():
                continue
            try:
                if not (directory / f"{k}.out").exists():
                    os.write(log, f"{os.getpid()} {k}\\n".encode())
                    time.sleep(0.01)
                    atomic_write_bytes(directory / f"{k}.out", str(os.getpid()).encode(), replace=False)
            finally:
                lease.release()
    """
)


def test_two_processes_compute_each_key_once(tmp_path):
    keys = 40
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(keys)], cwd=ROOT) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    computed = Counter(line.split()[1] for line in (tmp_path / "log").read_text().splitlines())
    assert computed == Counter({str(k): 1 for k in range(keys)})
    assert not list(tmp_path.glob("*.lease")) and not list(tmp_path.glob(f"{TMP_PREFIX}*"))


def test_a_sigkilled_holders_lease_is_taken_over_at_once_on_its_host(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from pathlib import Path
            from claims.storage.lease import Lease
            lease = Lease(Path({str(tmp_path)!r}) / "r.lease", timeout=3600)
            assert lease.try_acquire()
            print("held", flush=True)
            time.sleep(3600)
        """),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert not Lease(tmp_path / "r.lease", timeout=3600).try_acquire()  # alive: not taken
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    taker = Lease(tmp_path / "r.lease", timeout=3600)
    assert taker.try_acquire()  # the owner's pid is gone on this host: no need to wait out the timeout
    assert json.loads((tmp_path / "r.lease").read_text())["pid"] == os.getpid()
    taker.release()


def remote_lease(path: Path) -> None:
    path.write_text(json.dumps({"host": "another-node", "pid": 1, "token": "remote", "created": 0}))


def test_a_remote_holder_is_taken_over_only_after_its_lease_stops_changing_for_the_timeout(tmp_path):
    remote_lease(tmp_path / "r.lease")
    taker = Lease(tmp_path / "r.lease", timeout=1.0)
    first_try = time.monotonic()
    while not taker.try_acquire():
        time.sleep(0.05)
    assert time.monotonic() - first_try >= 1.0
    taker.release()


def test_a_live_holders_lease_is_never_taken_while_its_heartbeat_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_module, "_owner_gone", lambda owner: False)  # liveness by heartbeat alone
    holder = Lease(tmp_path / "r.lease", timeout=0.5, heartbeat=0.05)
    assert holder.try_acquire()
    contender = Lease(tmp_path / "r.lease", timeout=0.5)
    deadline = time.monotonic() + 2.0  # four timeouts
    while time.monotonic() < deadline:
        assert not contender.try_acquire()
        time.sleep(0.02)
    assert holder.held() and not holder.lost
    holder.release()
    assert contender.try_acquire()
    contender.release()


def test_of_several_takers_of_a_stale_lease_exactly_one_wins(tmp_path):
    for round_ in range(10):  # one round caught the lost-update race of a rename takeover 1 time in 5
        path = tmp_path / f"r{round_}.lease"
        remote_lease(path)
        winners, start = [], threading.Barrier(8)

        def take() -> None:
            lease = Lease(path, timeout=0.5, heartbeat=0.02)
            start.wait()
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                if lease.try_acquire():
                    winners.append(lease)
                    return
                time.sleep(0.01)

        threads = [threading.Thread(target=take) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1 and winners[0].held(), f"round {round_}: {len(winners)} winners"
        winners[0].release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_takeover_left_unfinished_by_a_dead_breaker_is_cleared(tmp_path):
    remote_lease(tmp_path / "r.lease")
    remote_lease(tmp_path / "r.lease.break")  # a breaker on another node died mid-takeover
    taker = Lease(tmp_path / "r.lease", timeout=0.3)
    first_try = time.monotonic()
    while not taker.try_acquire():
        time.sleep(0.02)
    assert time.monotonic() - first_try >= 0.3 and taker.held()
    taker.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_holder_notices_when_its_lease_was_taken(tmp_path):
    holder = Lease(tmp_path / "r.lease", timeout=10, heartbeat=0.02)
    assert holder.try_acquire()
    os.rename(tmp_path / "r.lease", tmp_path / "elsewhere")
    deadline = time.monotonic() + 2
    while not holder.lost and time.monotonic() < deadline:
        time.sleep(0.01)
    assert holder.lost
    holder.release()
    assert (tmp_path / "elsewhere").exists()  # release never removes a lease that is not its own


def test_a_result_is_published_once(tmp_path):
    assert atomic_write_bytes(tmp_path / "r.pt", b"first", replace=False)
    assert not atomic_write_bytes(tmp_path / "r.pt", b"second", replace=False)
    assert (tmp_path / "r.pt").read_bytes() == b"first"
    assert atomic_write_bytes(tmp_path / "r.pt", b"third")  # the default replaces
    assert (tmp_path / "r.pt").read_bytes() == b"third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pt"]
