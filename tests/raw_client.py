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
