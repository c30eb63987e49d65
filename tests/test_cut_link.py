"""A cut link: the victim keeps running and its sockets stay open, but
every packet it sends is silently dropped (iptables on loopback, matched by
the victim's user).  Only deadlines can catch that: the survivors' ops must
fail within peer_timeout (+1 s), and the survivors continue in a smaller
group.  Needs root and iptables; skips cleanly otherwise."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

import pyccl
from tests import ft_workers

CTX = multiprocessing.get_context("spawn")
UID = 65534  # nobody


def _iptables(action: str) -> bool:
    cmd = ["iptables", action, "OUTPUT", "-o", "lo", "-p", "tcp", "-m", "owner",
           "--uid-owner", str(UID), "-j", "DROP"]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _can_cut() -> bool:
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        return False
    if not _iptables("-A"):
        return False
    _iptables("-D")
    return True


@pytest.mark.timeout(180)
@pytest.mark.skipif(not _can_cut(), reason="needs root and iptables (owner match)")
def test_silently_dropped_packets_are_caught_by_deadlines() -> None:
    world, victim = 3, 2
    with pyccl.Master() as master:
        q = CTX.Queue()
        ops = CTX.RawArray("l", world)
        procs = [CTX.Process(target=ft_workers.cut_member,
                             args=(master.address, world, r, q, victim, UID,
                                   ops))
                 for r in range(world)]
        for p in procs:
            p.start()
        try:
            ready = [q.get(timeout=60) for _ in range(world)]
            assert all(r.get("ready") for r in ready), ready
            # Ops are flowing (counted, not timed), then the link goes.
            deadline = time.monotonic() + 60
            while ops[victim] < 20:
                assert time.monotonic() < deadline, list(ops)
                time.sleep(0.002)
            assert _iptables("-A")
            t_cut = time.time()
            reports = []
            deadline = time.monotonic() + 90
            while len([r for r in reports if not r.get("victim")]) < world - 1:
                reports.append(q.get(timeout=max(0.1, deadline - time.monotonic())))
        finally:
            while _iptables("-D"):
                pass
            for p in procs:
                p.kill()
                p.join(timeout=10)
    survivors = [r for r in reports if not r.get("victim")]
    for r in survivors:
        assert "exception" not in r, r
        assert r["error"] in ("PeerLost", "Aborted"), r
        assert r["failed_at"] - t_cut < 1.0 + 1.0 + 0.5, r  # peer_timeout + 1 s
        assert r["size"] == world - 1 and r["ok"], r


def _port_rules(action: str, port: int) -> bool:
    """DROP every loopback packet to or from a local TCP port."""
    ok = True
    for match in ("--sport", "--dport"):
        cmd = ["iptables", action, "INPUT", "-i", "lo", "-p", "tcp", match,
               str(port), "-j", "DROP"]
        ok &= subprocess.run(cmd, capture_output=True).returncode == 0
    return ok


@pytest.mark.timeout(180)
@pytest.mark.skipif(not _can_cut(), reason="needs root and iptables")
def test_master_ends_a_group_whose_last_member_vanished() -> None:
    """Issue 9 (stress defect 4): the only member of a group vanishes with
    its control link open (its host lost power: every packet dropped, its
    close never arrives).  The master's keepalive probes go unanswered,
    it ends the group, and a newcomer forms a new one instead of waiting
    for a safe point nobody will reach."""
    import socket
    import struct
    import secrets
    from tests.raw_client import authenticated_link, frame, recv_exact
    key = secrets.token_bytes(32)
    with pyccl.Master(key=key) as master:
        # A member played over a raw socket: handshake, REGISTER for a
        # group of one (sealed with its MAC: protocol 4), its GROUP.
        sock, mac = authenticated_link(master.port, key)
        host = b"127.0.0.1"
        reg = (struct.pack("<IiHH", 1, -1, 1234, 1) + secrets.token_bytes(16)
               + bytes([len(host)]) + host)
        sock.sendall(mac.seal(frame(16, reg)))
        hdr = recv_exact(sock, 40)
        assert len(hdr) == 40 and hdr[0] == 17, hdr  # GROUP
        port = sock.getsockname()[1]
        assert _port_rules("-A", port)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
            sock.close()  # its reset is dropped: the master never hears
            t0 = time.monotonic()
            comm = pyccl.Communicator(master.address, world_size=1, key=key,
                                      connect_timeout=90.0)
            took = time.monotonic() - t0
            try:
                assert comm.world_size == 1
                x = np.ones(3, np.float32)
                comm.all_reduce(x)
                assert (x == 1).all()
            finally:
                comm.close()
        finally:
            while _port_rules("-D", port):
                pass
    # Liveness only: the probes end the link within about 20 s.
    assert took < 60.0, took
