"""An on-path relay on the control link (peer <-> master), without the key
(docs/security.md, threat model): it rewrites one byte of the GROUP the
master sends (the attack that redirected part of a mesh through the
attacker before protocol 4).  With a key the peer refuses the GROUP (its
MAC fails) and says so; nothing of the rewritten GROUP is used.  Without a
key nothing is authenticated (loopback only), so the test only checks that
a truncated frame is a clean failure."""
import secrets
import socket
import threading

import pytest

import pyccl

pytestmark = pytest.mark.timeout(60)

KEY = secrets.token_hex(32)
HANDSHAKE_FROM_MASTER = {True: 64 + 32, False: 64}  # HELLO, then the proof


class Relay:
    """Listens on a port of its own and forwards to the master; in the
    master -> peer direction it hands the bytes after the handshake to
    `tamper(first_frame_bytes) -> bytes or None (cut)`."""

    def __init__(self, master_port, keyed, tamper):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.master_port, self.keyed, self.tamper = master_port, keyed, tamper
        self.tampered = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            m = socket.create_connection(("127.0.0.1", self.master_port))
            threading.Thread(target=self._pipe, args=(c, m, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(m, c, self.tamper),
                             daemon=True).start()

    def _pipe(self, src, dst, tamper):
        skip = HANDSHAKE_FROM_MASTER[self.keyed]  # forwarded as it comes
        passed, held = 0, b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if tamper and not self.tampered.is_set():
                    head = data[:max(0, skip - passed)]
                    if head:
                        dst.sendall(head)
                        passed += len(head)
                    held += data[len(head):]
                    if len(held) < 48:
                        continue
                    out = tamper(b"", held)
                    self.tampered.set()
                    if out is None:
                        dst.sendall(held[:30])  # a frame cut short
                        break
                    data = out
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.lsock.close()


def flip_group_port(handshake, frames):
    """Changes the first member's port in the GROUP (payload byte 14)."""
    b = bytearray(frames)
    b[40 + 14] ^= 0x01
    return handshake + bytes(b)


def cut(handshake, frames):
    return None


def test_rewritten_group_is_refused_with_a_key():
    with pyccl.Master(key=KEY) as master:
        relay = Relay(master.port, True, flip_group_port)
        try:
            with pytest.raises(pyccl.AuthError, match="MAC"):
                pyccl.Communicator("127.0.0.1:%d" % relay.port, world_size=1,
                                   key=KEY, connect_timeout=10.0)
            assert relay.tampered.is_set()
            # The master is unharmed: a peer on a clean path gets in.
            with pyccl.Communicator(master.address, world_size=1, key=KEY,
                                    connect_timeout=10.0) as c:
                assert c.size == 1
        finally:
            relay.close()


@pytest.mark.parametrize("keyed", [True, False])
def test_truncated_control_frame_is_a_clean_failure(keyed):
    kw = {"key": KEY} if keyed else {}
    with pyccl.Master(**kw) as master:
        relay = Relay(master.port, keyed, cut)
        try:
            with pytest.raises(pyccl.CclError):
                pyccl.Communicator("127.0.0.1:%d" % relay.port, world_size=1,
                                   connect_timeout=3.0, **kw)
            assert relay.tampered.is_set()
        finally:
            relay.close()
