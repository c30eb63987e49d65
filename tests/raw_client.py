"""A raw-socket pyccl client written from docs/protocol.md, with Python's
own struct/hmac/hashlib: the tests' independent view of the wire, used to
play honest, wrong and hostile peers against a real master."""
import hashlib
import hmac
import secrets
import socket
import struct
import time

import pyccl

MAGIC = b"PYCCL\x00\r\n"
ROLE_PEER_TO_MASTER, ROLE_PEER_TO_PEER, ROLE_MASTER = 1, 2, 3
FLAG_AUTH = 1
FLAG_FRAME_MAC, FLAG_ENCRYPT = 2, 4
HDR = struct.Struct("<BBBBIQQQIHH")  # the 40-byte frame header


def hello(version=None, role=ROLE_PEER_TO_MASTER, flags=FLAG_AUTH, epoch=0,
          rank=0xFFFFFFFF, conn_index=0, uuid=None, nonce=None):
    """A 64-byte HELLO (the layout of protocol versions 2 and 3); random uuid and nonce
    unless given."""
    version = pyccl.PROTOCOL_VERSION if version is None else version
    uuid = secrets.token_bytes(16) if uuid is None else uuid
    nonce = secrets.token_bytes(16) if nonce is None else nonce
    msg = (MAGIC + struct.pack("<HBBIII", version, role, flags, epoch, rank,
                               conn_index) + uuid + nonce + bytes(8))
    assert len(msg) == 64
    return msg


def proof(key, side, hc, ha):
    """The proof the connector ("c") or the acceptor ("a") sends."""
    label = b"pyccl/2 connector\x00" if side == "c" else b"pyccl/2 acceptor\x00"
    return hmac.new(key, label + hc + ha, hashlib.sha256).digest()


def frame(ftype, payload=b"", epoch=0, tag=0, length=None, coll=0):
    """A frame header (with `length` defaulting to the payload's) and the
    payload."""
    n = len(payload) if length is None else length
    return HDR.pack(ftype, coll, 0, 0, epoch, tag, 0, 0, n, 0, 0) + payload


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def recv_exact(sock, n):
    """Up to n bytes: fewer only if the other end closed."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def start_handshake(port, my_hello):
    """Connects, sends our HELLO, returns (socket, the master's HELLO)."""
    sock = connect(port)
    sock.sendall(my_hello)
    theirs = recv_exact(sock, 64)
    assert len(theirs) == 64 and theirs[:8] == MAGIC
    return sock, theirs


def authenticated(port, key):
    """A control connection that passed the handshake with `key`."""
    mine = hello()
    sock, theirs = start_handshake(port, mine)
    sock.sendall(proof(key, "c", mine, theirs))
    assert recv_exact(sock, 32) == proof(key, "a", mine, theirs)
    return sock


def read_until_closed(sock, limit_s=5.0):
    """Everything the other end sends before closing, or None if it is
    still open after limit_s."""
    sock.settimeout(limit_s)
    data = b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() <= deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except socket.timeout:
            return None
        if not chunk:
            return data
        data += chunk
    return None


def closed_within(sock, limit_s):
    """True if the other end closes within limit_s (after any bytes)."""
    return read_until_closed(sock, limit_s) is not None


# ---- frame MACs (protocol 4), from docs/protocol.md and docs/security.md ----
# Written independently of the C code with Python integers: Poly1305
# (RFC 8439), NH and NHPoly1305 as in Linux crypto/nhpoly1305.c, the key
# derivation and the pad of csrc/src/mac.h.

_P1305 = (1 << 130) - 5
_M32, _M64 = (1 << 32) - 1, (1 << 64) - 1


def _poly_blocks(h, r, data):
    for i in range(0, len(data), 16):
        block = int.from_bytes(data[i:i + 16], "little") + (1 << 128)
        h = (h + block) * r % _P1305
    return h


def _nh(key_words, chunk):
    """NH of one chunk (a multiple of 16 bytes, at most 1024): 4 u64."""
    sums = [0, 0, 0, 0]
    for u in range(len(chunk) // 16):
        m = [int.from_bytes(chunk[16 * u + 4 * j:16 * u + 4 * j + 4], "little")
             for j in range(4)]
        k = key_words[4 * u:4 * u + 16]
        for p in range(4):
            sums[p] += (((m[0] + k[4 * p]) & _M32) * ((m[2] + k[4 * p + 2]) & _M32)
                        + ((m[1] + k[4 * p + 1]) & _M32)
                        * ((m[3] + k[4 * p + 3]) & _M32))
    return b"".join((s & _M64).to_bytes(8, "little") for s in sums)


class FrameMacKey:
    """One direction's frame MAC key, from its 32-byte seed."""

    def __init__(self, seed):
        okm = b"".join(hmac.new(seed, b"pyccl frame mac v1"
                                + struct.pack("<I", i), hashlib.sha256).digest()
                       for i in range(35))
        self.r = (int.from_bytes(okm[:16], "little")
                  & 0x0ffffffc0ffffffc0ffffffc0fffffff)
        self.nh = [int.from_bytes(okm[16 + 4 * i:20 + 4 * i], "little")
                   for i in range(268)]
        self.pad_key = okm[1088:1120]

    def tag(self, seq, message):
        h = 0
        for i in range(0, len(message), 1024):
            chunk = message[i:i + 1024]
            chunk += bytes(-len(chunk) % 16)
            h = _poly_blocks(h, self.r, _nh(self.nh, chunk))
        h = _poly_blocks(h, self.r, struct.pack("<QQ", len(message), 0))
        pad = hmac.new(self.pad_key, struct.pack("<Q", seq),
                       hashlib.sha256).digest()[:16]
        return ((h + int.from_bytes(pad, "little")) % (1 << 128)).to_bytes(16, "little")


class LinkMac:
    """The MACs of a keyed connection as the connector sees them: seal()
    what we send, check() what we receive, each direction counting its
    tagged frames from 0."""

    def __init__(self, key, hc, ha):
        def seed(label):
            return hmac.new(key, label + b"\x00" + hc + ha, hashlib.sha256).digest()
        self.tx = FrameMacKey(seed(b"pyccl/2 frames connector->acceptor"))
        self.rx = FrameMacKey(seed(b"pyccl/2 frames acceptor->connector"))
        self.tx_seq = self.rx_seq = 0

    def seal(self, frame_bytes):
        tag = self.tx.tag(self.tx_seq, frame_bytes)
        self.tx_seq += 1
        return frame_bytes + tag

    def check(self, frame_bytes, tag):
        ok = hmac.compare_digest(self.rx.tag(self.rx_seq, frame_bytes), tag)
        self.rx_seq += 1
        return ok


def authenticated_link(port, key):
    """A keyed control connection and its LinkMac: frames sent on it must
    be sealed (protocol 4)."""
    mine = hello()
    sock, theirs = start_handshake(port, mine)
    sock.sendall(proof(key, "c", mine, theirs))
    assert recv_exact(sock, 32) == proof(key, "a", mine, theirs)
    return sock, LinkMac(key, mine, theirs)


def read_sealed_frame(sock, mac):
    """(header, payload, tag_ok) of the next frame on a keyed link."""
    hdr = recv_exact(sock, 40)
    if len(hdr) < 40:
        return hdr, b"", False
    n = HDR.unpack(hdr)[8]
    payload = recv_exact(sock, n)
    tag = recv_exact(sock, 16)
    return hdr, payload, mac.check(hdr + payload, tag)
