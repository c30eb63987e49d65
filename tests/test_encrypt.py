"""encrypt=True (docs/security.md, "Encryption"), end to end with real
processes and sockets on 127.0.0.1.

Exact results with every frame encrypted (N=2, and N=3 with two
connections per peer and small frames, so one op's frames are spread over
the pool and each is sealed on its own); a member whose setting differs is
refused with a message naming the mismatch; encrypt without a key, or
where libcrypto cannot be loaded, fails at creation with the reason.

A raw Python peer (tests/raw_client.py) opens a real member's frames
with the key, nonce and associated data that docs/protocol.md describes,
using an independent AES-GCM (the `cryptography` package, skipped without
it).  What tampering does is tested with an on-path relay in
csrc/tests/test_relay.c (run by tests/test_c_suite.py): no DATA
payload crosses in clear, a flipped ciphertext byte or header byte is a
link fault on every survivor with inputs intact, nobody is expelled, and
the member left computes exactly after update_topology.  The cipher itself
is checked against published vectors in csrc/tests/test_aead.c.
"""
import concurrent.futures as cf
import ctypes
import hashlib
import hmac
import multiprocessing
import secrets
import socket
import struct

import numpy as np
import pytest

import pyccl
from tests import workers
from tests.peers import run_group
from tests.raw_client import (FLAG_AUTH, FLAG_ENCRYPT, HDR, ROLE_PEER_TO_PEER,
                              authenticated_link, frame, hello, proof,
                              read_sealed_frame, recv_exact, start_handshake)

pytestmark = pytest.mark.timeout(180)

KEY = secrets.token_bytes(32)


def _have_libcrypto() -> bool:
    for name in ("libcrypto.so.3", "libcrypto.so.1.1"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


needs_libcrypto = pytest.mark.skipif(
    not _have_libcrypto(), reason="OpenSSL's libcrypto is not installed")


def sums_of_sizes(comm: pyccl.Communicator) -> list:
    """All-reduces of sizes around the sealing piece (256 KiB) and the
    ring's chunks, with inputs that differ per rank; exact sums."""
    failures = []
    n, r = comm.world_size, comm.rank
    for count in (0, 1, 3, 65535, 65536, 65537, (1 << 20) + 7, 3 << 20):
        i = np.arange(count, dtype=np.int64) % 251
        x = (i + r).astype(np.float32)
        comm.all_reduce(x)
        want = (i * n + n * (n - 1) // 2).astype(np.float32)
        if not np.array_equal(x, want):
            failures.append("all_reduce of %d floats is wrong" % count)
    return failures


@needs_libcrypto
def test_encrypted_collectives_are_exact_n2():
    with pyccl.Master(key=KEY) as master:
        opts = dict(master=master, key=KEY, encrypt=True)
        assert run_group(2, sums_of_sizes, **opts) == [[], []]
        assert run_group(2, workers.async_many, 24, **opts) == [[], []]


@needs_libcrypto
def test_encrypted_collectives_are_exact_n3_two_connections():
    with pyccl.Master(key=KEY) as master:
        opts = dict(master=master, key=KEY, encrypt=True, conns_per_peer=2,
                    chunk_bytes=4096)
        assert run_group(3, workers.everything_small, **opts) == [[], [], []]
        assert run_group(3, sums_of_sizes, **opts) == [[], [], []]


@needs_libcrypto
def test_encrypt_with_frame_mac_too():
    """Both switches on: encryption authenticates every frame anyway (the
    frame MAC is not added on top), and the results are exact."""
    with pyccl.Master(key=KEY) as master:
        assert run_group(2, workers.everything_small, master=master, key=KEY,
                         encrypt=True, frame_mac=True) == [[], []]


def test_encrypt_needs_a_key():
    with pytest.raises(pyccl.InvalidArgument, match="encrypt needs a key"):
        pyccl.Communicator("127.0.0.1:1", world_size=1, encrypt=True)


def test_missing_libcrypto_is_named(monkeypatch):
    """PYCCL_TEST_NO_LIBCRYPTO (a test hook) makes the loader fail as on a
    machine without OpenSSL: creation fails before anything connects,
    naming the library and the fix."""
    monkeypatch.setenv("PYCCL_TEST_NO_LIBCRYPTO", "1")
    with pytest.raises(pyccl.InvalidArgument) as info:
        pyccl.Communicator("127.0.0.1:1", world_size=1, key=KEY, encrypt=True)
    text = str(info.value)
    assert "libcrypto.so.3" in text and "libssl3" in text, text
    assert "encrypt off" in text, text
    # Without encrypt nothing needs the library: the hook changes nothing.
    with pyccl.Master(key=KEY) as master:
        with pyccl.Communicator(master, world_size=1, key=KEY) as comm:
            x = np.ones(4, dtype=np.float32)
            comm.all_reduce(x)
            assert x.tolist() == [1.0] * 4


@needs_libcrypto
def test_encrypt_must_agree(core_log):
    """Rank 0 encrypts, rank 1 does not: the connector (rank 1) fails with
    Mismatch naming the setting; the acceptor (rank 0) refuses the
    connection, logs the cause, and its join fails (when its wait for the
    mesh ends) with the same cause in the message."""

    def join(rank):
        try:
            with pyccl.Communicator(master, world_size=2, rank=rank, key=KEY,
                                    encrypt=(rank == 0), connect_timeout=5):
                return None
        except pyccl.CclError as exc:
            return exc

    with pyccl.Master(key=KEY) as master:
        with cf.ThreadPoolExecutor(2) as pool:
            errors = list(pool.map(join, [0, 1]))
    assert isinstance(errors[1], pyccl.Mismatch), errors
    assert "encryption is off here but on at" in str(errors[1]), errors
    assert isinstance(errors[0], pyccl.CclError), errors
    assert "encryption is on here but off at" in str(errors[0]), errors
    core_log.wait_for("encryption is on here but off at", timeout=5)


FT_DATA, FT_REGISTER, FT_GROUP = 1, 16, 17


def _rank0(address, key, values, out):
    """Rank 0 of a group of 2 whose rank 1 is the test itself: one
    encrypted all-reduce, which cannot finish (the test only reads)."""
    try:
        # One connection, as the test registers for (automatic K would
        # open several).
        with pyccl.Communicator(address, world_size=2, rank=0, key=key,
                                encrypt=True, conns_per_peer=1,
                                op_timeout=10, peer_timeout=10) as comm:
            try:
                comm.all_reduce(values.copy())
            except pyccl.CclError:
                pass
        out.put("ok")
    except BaseException as exc:  # reported to the test
        out.put(repr(exc))


def _read_group(sock, mac):
    """The first GROUP on the control link: (epoch, port, uuid) of rank 0."""
    for _ in range(16):
        hdr, payload, ok = read_sealed_frame(sock, mac)
        assert ok, "a control frame failed its MAC"
        if hdr[0] != FT_GROUP:
            continue
        epoch, world, mine = struct.unpack_from("<III", payload)
        assert (world, mine) == (2, 1), (world, mine)
        port, uuid = struct.unpack_from("<H16s", payload, 14)
        return epoch, port, uuid
    raise AssertionError("no GROUP from the master")


@needs_libcrypto
def test_wire_carries_ciphertext_that_the_documented_keys_open():
    """docs/protocol.md, "Encryption", checked from the documents alone:
    a raw Python peer (rank 1) joins a real rank 0 that encrypts, derives
    the AEAD key from the handshake as documented, and opens rank 0's
    frames with an independent AES-GCM (the `cryptography` package): the
    nonce is the frame counter, the header is the associated data, and the
    DATA payload, not readable on the wire, is rank 0's input bytes."""
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    from cryptography.exceptions import InvalidTag
    values = (np.arange(1 << 16, dtype=np.float32) * 3 + 1)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    with pyccl.Master(key=KEY) as master, \
            socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        ctrl, mac = authenticated_link(master.port, KEY)
        me = secrets.token_bytes(16)
        register = (struct.pack("<IiHH", 2, 1, listener.getsockname()[1], 1)
                    + me + bytes([9]) + b"127.0.0.1")
        ctrl.sendall(mac.seal(frame(FT_REGISTER, register)))
        proc = ctx.Process(target=_rank0, args=(master.address, KEY, values, out),
                           daemon=True)
        proc.start()
        try:
            with ctrl:
                epoch, port, _ = _read_group(ctrl, mac)
                mine = hello(role=ROLE_PEER_TO_PEER,
                             flags=FLAG_AUTH | FLAG_ENCRYPT, epoch=epoch,
                             rank=1, conn_index=0, uuid=me)
                sock, theirs = start_handshake(port, mine)
                with sock:
                    sock.sendall(proof(KEY, "c", mine, theirs))
                    assert recv_exact(sock, 32) == proof(KEY, "a", mine,
                                                         theirs)
                    seed = hmac.new(KEY, b"pyccl/2 frames acceptor->connector"
                                    b"\x00" + mine + theirs,
                                    hashlib.sha256).digest()
                    key = hmac.new(seed, b"pyccl frame aead v1"
                                   + struct.pack("<I", 0),
                                   hashlib.sha256).digest()
                    gcm = aead.AESGCM(key)
                    for n in range(64):
                        hdr = recv_exact(sock, 40)
                        assert len(hdr) == 40, "rank 0 closed"
                        fields = HDR.unpack(hdr)
                        length, offset = fields[8], fields[6]
                        body = recv_exact(sock, length + 16)
                        nonce = struct.pack("<Q", n) + bytes(4)
                        # Raises InvalidTag unless key, nonce and
                        # associated data are exactly as documented.
                        plain = gcm.decrypt(nonce, body, hdr)
                        if hdr[0] == FT_DATA and length:
                            break
                    else:
                        raise AssertionError("no DATA frame from rank 0")
                    want = values.tobytes()[offset:offset + length]
                    assert plain == want
                    assert body[:length] != want
                    # A flipped header byte fails the documented tag.
                    bad = bytearray(hdr)
                    bad[8] ^= 1
                    with pytest.raises(InvalidTag):
                        gcm.decrypt(nonce, body, bytes(bad))
        finally:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert out.get(timeout=5) == "ok"
