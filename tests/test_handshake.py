"""The master's side of the connection handshake, with raw sockets: a
HELLO of another protocol version, bytes that are not pyccl at all, and a
client that says nothing.  Each gets its connection closed, and the master
keeps serving (a normal group still forms afterwards)."""
import socket
import struct
import time

import pytest

import pyccl
from tests import workers
from tests.peers import run_group

pytestmark = pytest.mark.timeout(120)

MAGIC = b"PYCCL\x00\r\n"
ROLE_PEER_TO_MASTER = 1


def hello(version, role=ROLE_PEER_TO_MASTER, flags=0, epoch=0,
          rank=0xFFFFFFFF, conn_index=0, uuid=b"\x11" * 16,
          nonce=b"\x22" * 16):
    """A 64-byte HELLO as docs/protocol.md lays it out (version 2)."""
    msg = MAGIC + struct.pack("<HBBIII", version, role, flags, epoch, rank,
                              conn_index) + uuid + nonce + bytes(8)
    assert len(msg) == 64
    return msg


def test_version_1_peer_is_named_not_waited_for():
    """A version-1 peer sends a 48-byte HELLO: the master must decide from
    the version field and close, not wait for 16 bytes that never come."""
    with pyccl.Master() as master:
        with _connect(master) as sock:
            sock.sendall(hello(1)[:48])
            _check_master_hello(read_until_closed(sock))


def read_until_closed(sock, limit_s=5.0):
    """Everything the other end sends before closing; fails the test if it
    does not close within ``limit_s``."""
    sock.settimeout(limit_s)
    data = b""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data
        except socket.timeout:
            pytest.fail("connection still open after %gs (got %r)"
                        % (limit_s, data))
        if not chunk:
            return data
        data += chunk
        if time.monotonic() > deadline:
            pytest.fail("connection still open after %gs" % limit_s)


def _connect(master):
    return socket.create_connection(("127.0.0.1", master.port), timeout=5)


def _check_master_hello(data):
    # The master sends its own HELLO at once, whatever ours says.
    if data:
        assert data[:8] == MAGIC
        assert struct.unpack("<H", data[8:10])[0] == pyccl.PROTOCOL_VERSION


def test_version_mismatch_closed_and_master_keeps_serving():
    with pyccl.Master() as master:
        with _connect(master) as sock:
            sock.sendall(hello(999))
            _check_master_hello(read_until_closed(sock))
        results = run_group(2, workers.ident, master=master)
        assert [r for r, _, _ in results] == [0, 1]
        assert master.epoch >= 1


def test_garbage_and_silent_clients_do_not_block_the_master():
    with pyccl.Master() as master:
        with _connect(master) as garbage:
            garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(30))
            _check_master_hello(read_until_closed(garbage))
        with _connect(master) as bad_flags:
            bad_flags.sendall(hello(pyccl.PROTOCOL_VERSION, flags=0x80))
            read_until_closed(bad_flags)
        # A client that connects and says nothing stays open meanwhile.
        silent = _connect(master)
        try:
            results = run_group(2, workers.ident, master=master)
            assert len(results) == 2
        finally:
            silent.close()
