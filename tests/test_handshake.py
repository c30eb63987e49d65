"""The master's side of the connection handshake, with raw sockets: a
HELLO of another protocol version, bytes that are not pyccl at all, and a
client that says nothing.  Each gets its connection closed, and the master
keeps serving (a normal group still forms afterwards)."""
import struct

import pytest

import pyccl
from tests import workers
from tests.peers import run_group
from tests.raw_client import (MAGIC, connect, hello, read_until_closed,
                              recv_exact)

pytestmark = pytest.mark.timeout(120)


def closed(sock, limit_s=5.0):
    """What the master sent before closing; fails the test if it does not
    close within limit_s."""
    data = read_until_closed(sock, limit_s)
    if data is None:
        pytest.fail("connection still open after %gs" % limit_s)
    return data


def master_hello(sock):
    """The master sends its own HELLO at once, before reading ours: read
    and check it first (so a reset after our bad bytes cannot hide it)."""
    data = recv_exact(sock, 64)
    assert len(data) == 64, data
    assert data[:8] == MAGIC
    assert struct.unpack("<H", data[8:10])[0] == pyccl.PROTOCOL_VERSION


def test_version_1_peer_is_named_not_waited_for():
    """A version-1 peer sends a 48-byte HELLO: the master must decide from
    the version field and close, not wait for 16 bytes that never come."""
    with pyccl.Master() as master:
        with connect(master.port) as sock:
            master_hello(sock)
            sock.sendall(hello(1, flags=0)[:48])
            assert closed(sock) == b""  # nothing more: closed


def test_version_mismatch_closed_and_master_keeps_serving():
    with pyccl.Master() as master:
        with connect(master.port) as sock:
            master_hello(sock)
            sock.sendall(hello(999, flags=0))
            assert closed(sock) == b""
        results = run_group(2, workers.ident, master=master)
        assert [r for r, _, _ in results] == [0, 1]
        assert master.epoch >= 1


def test_garbage_and_silent_clients_do_not_block_the_master():
    with pyccl.Master() as master:
        with connect(master.port) as garbage:
            master_hello(garbage)
            garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(30))
            assert closed(garbage) == b""
        with connect(master.port) as bad_flags:
            master_hello(bad_flags)
            bad_flags.sendall(hello(flags=0x80))
            assert closed(bad_flags) == b""
        # A client that connects and says nothing stays open meanwhile.
        silent = connect(master.port)
        try:
            results = run_group(2, workers.ident, master=master)
            assert len(results) == 2
        finally:
            silent.close()
