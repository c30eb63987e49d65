"""`pyccl stress` with real processes: the CI run (about a minute, 6
peers, every fault kind that needs no namespace: kill, stop ended by
SIGCONT and by SIGKILL, leave, join, join storm, master restart, also
while a joiner waits), and the promise that no process outlives the
orchestrator, whether it is interrupted (SIGINT) or killed (SIGKILL)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import List

import pytest

from stress.procs import marked_processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stress(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "stress", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _pids(log_dir: str) -> List[int]:
    try:
        with open(os.path.join(log_dir, "pids")) as f:
            return [int(line.split()[0]) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _wait_for_survivors_to_go(token: str, timeout: float = 10.0) -> List[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = marked_processes(token)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(300)
def test_ci_churn_run_finds_no_violation_with_every_fault_kind(tmp_path):
    report = tmp_path / "report.json"
    log_dir = tmp_path / "logs"
    # Every kind of op (broadcast included) and stops of every length
    # around peer_timeout (2 s): 0.5-4 s, so some members are dropped
    # while stopped and woken later (the window of stress defects 1, 2
    # and 5 of docs/stress.md, fixed since).
    proc = _stress("--scenario", "churn", "--peers", "6", "--duration", "45",
                   "--seed", "20", "--master-restart-rate", "4",
                   "--master-with-joiner", "0.5", "--stop-kill-share", "0.4",
                   "--stop-min", "0.5", "--stop-max", "4",
                   "--json", str(report), "--png", str(tmp_path / "t.png"),
                   "--log-dir", str(log_dir))
    out, _ = proc.communicate(timeout=280)
    assert proc.returncode == 0, out
    assert "verdict                    PASS" in out, out
    r = json.loads(report.read_text())
    assert r["passed"] and r["violations"] == [], out
    inj = r["faults"]["injected"]
    for kind in ("kill", "stop", "stop-cont", "stop-kill", "leave", "join",
                 "storm", "master"):
        assert inj.get(kind, 0) >= 1, (kind, inj, out)
    details = [f["detail"] for f in r["faults"]["list"]]
    assert any("joiner waiting" in d for d in details), details
    assert r["ops"]["ok"] > 1000 and r["ops"]["compared"] > 1000, r["ops"]
    assert r["epochs"] > 10
    assert r["orchestrator_cpu"]["share_of_one_core"] < 0.25
    token = (log_dir / "token").read_text().strip()
    assert marked_processes(token) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_no_process_outlives_the_orchestrator(tmp_path, sig):
    log_dir = str(tmp_path / "logs")
    # Stops every few seconds, so a peer is likely stopped when it ends.
    proc = _stress("--scenario", "stall", "--peers", "4", "--duration", "120",
                   "--seed", "2", "--stop-rate", "40", "--stop-min", "2",
                   "--stop-max", "5", "--log-dir", log_dir)
    try:
        deadline = time.monotonic() + 60
        while len(_pids(log_dir)) < 5:  # the master and 4 peers
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.1)
        time.sleep(6.0)  # the churn is under way
        pids = _pids(log_dir)
        assert any(_alive(p) for p in pids)
        with open(os.path.join(log_dir, "token")) as f:
            token = f.read().strip()
        assert marked_processes(token), "children carry the run's marker"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        if sig == signal.SIGINT:
            assert proc.returncode == 130, out
            assert "INTERRUPTED" in out, out
        left = _wait_for_survivors_to_go(token)
        assert left == [], "left behind: %s" % left
        deadline = time.monotonic() + 10
        while [p for p in pids if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.1)  # dying ones are gone (or zombies) in ms
        assert [p for p in pids if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
