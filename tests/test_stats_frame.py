"""The STATS control frame against a real master, from a raw client
written from docs/protocol.md: accepted and shown, rate-limited, an
unknown payload version skipped, a malformed one rejected."""
from __future__ import annotations

import secrets
import struct
import time

import pyccl

from tests.raw_client import (HDR, frame, hello, read_until_closed,
                              recv_exact, start_handshake)

FT_REGISTER, FT_GROUP, FT_REJECT, FT_STATS = 16, 17, 18, 23


def stats_payload(epoch, rank, size, links=(), version=2, reserved=0):
    fixed = struct.pack("<BBHIII7Q", version, reserved, len(links), epoch,
                        rank, size, 10, 1, 1000, 2000, 4096, 5000, 7 << 20)
    body = b"".join(struct.pack("<IIIIQB3x", peer, rate_kbs, 40, 3, 1 << 20,
                                0) for peer, rate_kbs in links)
    return fixed + body


def member(master):
    """A raw member of a group of 1: handshake, REGISTER, GROUP."""
    sock, _ = start_handshake(master.port, hello(flags=0))
    reg = (struct.pack("<IiHH", 1, -1, 1234, 1) + secrets.token_bytes(16)
           + bytes([9]) + b"127.0.0.1")
    sock.sendall(frame(FT_REGISTER, reg))
    hdr = HDR.unpack(recv_exact(sock, 40))
    assert hdr[0] == FT_GROUP, hdr
    recv_exact(sock, hdr[8])
    return sock, hdr[4]  # the epoch


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_stats_frame_accepted_limited_versioned_and_checked():
    with pyccl.Master() as master:
        sock, epoch = member(master)
        # Our group is of 1; a report may still describe a bigger one
        # (the master keeps what members say, it judges links by epoch).
        sock.sendall(frame(FT_STATS, stats_payload(epoch, 0, 2, [(1, 5000)]),
                           epoch=epoch))
        sock.sendall(frame(FT_STATS, stats_payload(epoch, 0, 2, [(1, 5000)]),
                           epoch=epoch))  # at once: over the rate
        wait_for(lambda: master.stats().reports_dropped == 1)
        view = master.stats()
        assert view.reports == 1
        [m] = view.members
        assert (m.rank, m.ops_ok, m.ops_failed, m.tx_bytes) == (0, 10, 1, 1000)
        assert m.op_time == 0.005 and m.addr.startswith("127.0.0.1:")
        [link] = view.links
        assert (link.src, link.dst, link.rx_rate, link.samples) == (1, 0, 5e6, 3)
        assert link.rtt == 40e-6 and not link.slow
        time.sleep(0.1)
        sock.sendall(frame(FT_STATS, stats_payload(epoch, 0, 2, version=3),
                           epoch=epoch))
        wait_for(lambda: master.stats().reports_unknown_version == 1)
        time.sleep(0.1)
        sock.sendall(frame(FT_STATS, stats_payload(epoch, 0, 2, reserved=1),
                           epoch=epoch))
        reply = read_until_closed(sock, 10.0)
        assert reply is not None and reply[0] == FT_REJECT
        assert b"malformed STATS" in reply
        wait_for(lambda: master.stats().members == ())
