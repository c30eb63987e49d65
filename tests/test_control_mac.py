"""Protocol 4: every control frame of a keyed link carries a MAC with a
sequence number.  tests/raw_client.py computes the frame MAC in Python
from the documents alone (Poly1305, NHPoly1305, the key derivation and the
pad), independently of the C code; the master must accept its sealed
frames and seal its own so that Python's check passes, and must not act
on a frame without a valid tag (the link is closed: a link fault, no
REJECT)."""
import secrets
import struct

import pytest

import pyccl
from tests.raw_client import (authenticated_link, closed_within, frame,
                              read_sealed_frame, recv_exact)

pytestmark = pytest.mark.timeout(60)

KEY = secrets.token_bytes(32)
FT_HEARTBEAT, FT_REGISTER, FT_GROUP = 3, 16, 17


def register(world=1):
    host = b"127.0.0.1"
    return (struct.pack("<IiHH", world, -1, 1234, 1) + secrets.token_bytes(16)
            + bytes([len(host)]) + host)


@pytest.fixture(scope="module")
def master():
    with pyccl.Master(key=KEY) as m:
        yield m


def test_sealed_register_gets_a_sealed_group(master):
    sock, mac = authenticated_link(master.port, KEY)
    with sock:
        sock.sendall(mac.seal(frame(FT_HEARTBEAT)))
        sock.sendall(mac.seal(frame(FT_REGISTER, register())))
        hdr, payload, ok = read_sealed_frame(sock, mac)
        assert hdr[0] == FT_GROUP and ok


@pytest.mark.parametrize("case", ["no tag", "wrong tag", "replayed",
                                  "reordered", "flipped header"])
def test_frame_without_a_valid_tag_is_a_link_fault(master, case):
    sock, mac = authenticated_link(master.port, KEY)
    with sock:
        reg = frame(FT_REGISTER, register())
        if case == "no tag":
            data = reg + bytes(16)  # (the master reads 16 bytes as the tag)
        elif case == "wrong tag":
            data = reg + secrets.token_bytes(16)
        elif case == "replayed":
            hb = mac.seal(frame(FT_HEARTBEAT))
            data = hb + hb  # the second one reuses sequence number 0
        elif case == "reordered":
            first = mac.seal(frame(FT_HEARTBEAT))
            second = mac.seal(frame(FT_HEARTBEAT, tag=1))
            data = second + first
        else:
            sealed = bytearray(mac.seal(reg))
            sealed[4] ^= 1  # the epoch field
            data = bytes(sealed)
        sock.sendall(data)
        # Closed, with nothing sent first: no GROUP, and no REJECT either
        # (the frame may have been changed on the way).
        assert recv_exact(sock, 40) == b""
        assert closed_within(sock, 5.0)
