"""Shared state: bit-identical named tensors, hash-checked, fetched only
where they differ; newcomers get the full state; a peer killed during a
transfer leaves the survivors consistent."""
from __future__ import annotations

import multiprocessing
import time

import pytest

import pyccl
from tests import ss_workers
from tests.peers import run_group

CTX = multiprocessing.get_context("spawn")


def _same_hashes(results):
    assert all(r["hashes"] == results[0]["hashes"] for r in results), results


@pytest.mark.timeout(120)
def test_steady_state_moves_no_tensor_bytes():
    results = run_group(3, ss_workers.steady)
    _same_hashes(results)
    for r in results:
        assert r["received"] == [] and r["sent"] == 0 and r["got"] == 0
        # Only the hash table moved: far less than the 4 MiB of tensors.
        assert r["tx"] < 4096, r


@pytest.mark.timeout(120)
def test_drifted_peer_is_repaired_and_only_the_differing_tensor_moves():
    results = run_group(3, ss_workers.drifted)
    _same_hashes(results)
    fixed = [r for r in results if r["received"]]
    assert [r["rank"] for r in fixed] == [2]
    assert fixed[0]["received"] == ["b"] and fixed[0]["got"] == 1001 * 8


@pytest.mark.timeout(120)
def test_higher_revision_wins():
    results = run_group(3, ss_workers.revision_wins)
    _same_hashes(results)
    assert all(r["revision"] == 2 for r in results)
    assert sorted(r["rank"] for r in results if r["received"]) == [1, 2]


@pytest.mark.timeout(120)
def test_send_only_peer_keeps_its_bytes():
    results = run_group(3, ss_workers.send_only_keeps)
    assert results[0]["hashes"] == results[2]["hashes"]
    assert results[1]["hashes"]["w"] != results[0]["hashes"]["w"]
    assert all(r["received"] == [] for r in results)


@pytest.mark.timeout(120)
def test_torch_tensors_receive_only():
    pytest.importorskip("torch")
    results = run_group(2, ss_workers.torch_state)
    _same_hashes(results)
    assert results[1]["received"] == ["h", "w"]


def _collect(q, n, timeout):
    """The next n reports (readiness notes are skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        r = q.get(timeout=max(0.1, deadline - time.monotonic()))
        if not r.get("ready"):
            out.append(r)
    for r in out:
        assert "exception" not in r, r
    return out


@pytest.mark.timeout(180)
def test_joiner_gets_the_full_state():
    big = 16 << 20  # 64 MiB of float32
    with pyccl.Master() as master:
        q = CTX.Queue()
        procs = [CTX.Process(target=ss_workers.member_then_joiner,
                             args=(master.address, 2, r, q, big))
                 for r in range(2)]
        for p in procs:
            p.start()
        for _ in range(2):
            note = q.get(timeout=90)
            assert note.get("ready"), note
        # The group of two stands: the joiner arrives after it formed.
        procs.append(CTX.Process(target=ss_workers.joiner,
                                 args=(master.address, q, big)))
        procs[-1].start()
        results = _collect(q, 3, 150)
        for p in procs:
            p.join(timeout=10)
    _same_hashes(results)
    j = [r for r in results if r.get("joiner")][0]
    assert j["received"] == ["b", "step", "w"]
    assert j["got"] == big * 4 + 1001 * 8 + 8


@pytest.mark.timeout(180)
def test_peer_killed_during_transfer_survivors_consistent():
    world = 3
    with pyccl.Master() as master:
        q = CTX.Queue()
        procs = [CTX.Process(target=ss_workers.killed_during_transfer,
                             args=(master.address, world, r, q))
                 for r in range(world)]
        for p in procs:
            p.start()
        # Rank 0, a source of the 64 MiB transfer to rank 2, kills itself
        # while the bytes flow.
        results = _collect(q, world - 1, 150)
        for p in procs:
            p.join(timeout=10)
    _same_hashes(results)
    for r in results:
        assert r["size"] == 2
        assert r["errors"], r  # the first attempt failed on both survivors
