"""Same-host connections through shared memory (docs/design.md,
"Same-host connections"): peers on one host use it by default and get
exact results; either end can keep a pair on TCP (argument or
PYCCL_SHM=0); the fault model is unchanged (a SIGKILLed peer fails the
survivors' op at once through the doorbell socket's end, a SIGSTOPped one
through the silence deadline; inputs come back intact and the group goes
on smaller, still through shared memory); no file is left in /dev/shm.
The offer's decision with a relay in the path and a tampered offer are in
csrc/tests/test_shm_setup.c (run by tests/test_c_suite.py)."""
from __future__ import annotations

import glob
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

import pyccl
from tests import shm_workers

def _shm_room() -> int:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


# Three ranks map 3 files of 16 MiB + 4 KiB (rings of 8 MiB each way); in a
# container's 64 MiB /dev/shm they fit, a shorter one gets smaller rings
# (the namespace test below), a missing or full one makes pyccl fall back
# to TCP (and these tests, which check that shared memory is used, skip).
pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(_shm_room() < (32 << 20),
                                 reason="no /dev/shm with 32 MiB free")]
CTX = multiprocessing.get_context("spawn")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(world, target, args_of, env_of=None, timeout=120, **kwargs):
    """Starts world processes target(address, world, rank, *args_of(rank),
    q, **kwargs) and returns (master, procs, q); the caller reads q."""
    master = pyccl.Master()
    q = CTX.Queue()
    procs = []
    for r in range(world):
        old = dict(os.environ)
        if env_of:
            os.environ.update(env_of(r))
        try:
            p = CTX.Process(target=target(r),
                            args=(master.address, world, r, *args_of(r), q),
                            kwargs=kwargs, daemon=True)
            p.start()
        finally:
            os.environ.clear()
            os.environ.update(old)
        procs.append(p)
    return master, procs, q


def _finish(master, procs):
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    master.close()


def _files_of(pids):
    return [f for f in glob.glob("/dev/shm/pyccl-*")
            if any(f.startswith("/dev/shm/pyccl-%d-" % pid) for pid in pids)]


def test_same_host_peers_use_shared_memory_and_are_exact():
    world = 3
    master, procs, q = _run(world, lambda r: shm_workers.exact_ops,
                            lambda r: (None,))
    try:
        got = sorted(q.get(timeout=180) for _ in range(world))
    finally:
        _finish(master, procs)
    for rank, links, _ in got:
        assert set(links) == set(range(world)) - {rank}
        for peer, (conns, shm) in links.items():
            assert conns >= 1 and shm == 1, (rank, peer, conns, shm)
    # The quantized all-reduce: the same bytes on every rank.
    assert len({b for _, _, b in got}) == 1
    assert _files_of([p.pid for p in procs]) == []


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_either_end_keeps_a_pair_on_tcp(how):
    """Rank 1 says no: its two pairs stay on TCP, the pair 0-2 does not;
    results are exact and identical either way."""
    world = 3
    if how == "argument":
        args_of = lambda r: (False if r == 1 else None,)  # noqa: E731
        env_of = None
    else:
        args_of = lambda r: (None,)  # noqa: E731
        env_of = lambda r: {"PYCCL_SHM": "0" if r == 1 else "1"}  # noqa: E731
    master, procs, q = _run(world, lambda r: shm_workers.exact_ops, args_of,
                            env_of)
    try:
        got = {rank: links for rank, links, _ in
               (q.get(timeout=180) for _ in range(world))}
    finally:
        _finish(master, procs)
    assert got[0][1][1] == 0 and got[2][1][1] == 0
    assert got[1][0][1] == 0 and got[1][2][1] == 0
    assert got[0][2][1] == 1 and got[2][0][1] == 1


def _stream_and_hit(sig, peer_timeout, quant=None, algorithm="auto"):
    world, victim = 3, 2
    master, procs, q = _run(
        world,
        lambda r: shm_workers.sleeper if r == victim else shm_workers.kill_target,
        lambda r: (peer_timeout,), quant=quant, algorithm=algorithm)
    try:
        ready = [q.get(timeout=120) for _ in range(world)]
        assert all(m[0] == "ready" for m in ready), ready
        for _, rank, _, links in ready:
            assert all(shm == 1 for _, shm in links.values()), (rank, links)
        time.sleep(1.0)  # ops in flight
        pid = next(m[2] for m in ready if m[1] == victim)
        t_hit = time.monotonic()
        os.kill(pid, sig)
        done = [q.get(timeout=peer_timeout + 60) for _ in range(world - 1)]
        waited = time.monotonic() - t_hit
    finally:
        if sig == signal.SIGSTOP:
            os.kill(procs[victim].pid, signal.SIGKILL)
        _finish(master, procs)
    return done, waited, procs


def test_killed_peer_fails_the_survivors_at_once_and_the_group_goes_on():
    done, waited, procs = _stream_and_hit(signal.SIGKILL, peer_timeout=30.0)
    for _, rank, err, took, intact, ops, z, size, links in done:
        assert err in ("PeerLost", "Aborted"), (rank, err)
        # The doorbell socket ends with the process: no deadline needed.
        assert took < 10.0, (rank, took)
        assert intact, rank
        assert ops > 0 and size == 2 and z == 2.0, (rank, ops, size, z)
        assert all(shm == 1 for _, shm in links.values()), (rank, links)
    assert waited < 30.0
    # A SIGKILLed process removes nothing itself; its rings were unlinked
    # when the connections were made.
    assert _files_of([p.pid for p in procs]) == []


@pytest.mark.parametrize("algorithm", ["ring", "direct"])
def test_killed_peer_fails_quantized_ops_with_input_intact(algorithm):
    # The quantized ring and direct all-reduce save each unit's input just
    # before they first write it (not all of it up front): a failure in
    # the middle of an op still gives every survivor its input back.
    done, waited, _ = _stream_and_hit(signal.SIGKILL, peer_timeout=30.0,
                                      quant="u8", algorithm=algorithm)
    for _, rank, err, took, intact, ops, z, size, links in done:
        assert err in ("PeerLost", "Aborted"), (rank, err)
        assert took < 10.0, (rank, took)
        assert intact, rank
        assert ops > 0 and size == 2 and z == 2.0, (rank, ops, size, z)


def test_stopped_peer_is_caught_by_the_silence_deadline():
    peer_timeout = 2.0
    done, waited, _ = _stream_and_hit(signal.SIGSTOP, peer_timeout)
    for _, rank, err, took, intact, ops, z, size, links in done:
        assert err in ("PeerLost", "Aborted"), (rank, err)
        assert took < peer_timeout + 5.0, (rank, took)
        assert intact and size == 2 and z == 2.0, (rank, intact, size, z)


def _can_mount_tmpfs() -> bool:
    return (os.geteuid() == 0 and shutil.which("unshare") is not None
            and shutil.which("mount") is not None)


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare")
def test_short_dev_shm_gets_smaller_rings():
    # A /dev/shm of 20 MiB (in a mount namespace of its own) holds one
    # file of the largest rings (16 MiB + 4 KiB) but not three: the
    # connectors halve the rings until /dev/shm takes them, so every pair
    # still goes through shared memory, and the ops stay exact.
    script = ("mount -t tmpfs -o size=20m tmpfs /dev/shm && "
              "exec %s -m tests.shm_small" % shlex.quote(sys.executable))
    res = subprocess.run(["unshare", "--mount", "--propagation", "private",
                          "sh", "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=180)
    if res.returncode != 0 and "unshare failed" in res.stderr:
        pytest.skip("no mount namespaces here: " + res.stderr.strip())
    assert res.returncode == 0, res.stderr[-3000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(seen) == 3, seen
    for rank, links in seen.items():
        assert len(links) == 2, (rank, links)
        assert all(v[1] == 1 for v in links.values()), (rank, links)
