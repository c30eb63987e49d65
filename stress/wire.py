"""Framing of the report channel between peers and the orchestrator.

A frame is a 4-byte little-endian length followed by that many bytes of
msgpack encoding one map.  The decoder does no I/O (``feed(bytes)``, then
``messages()``), so the same code serves the orchestrator's asyncio
streams and the tests.  Every length is checked against ``MAX_FRAME``
before anything is buffered for it: a corrupt or hostile length is a
:class:`FrameError`, never a large allocation.
"""
from __future__ import annotations

import socket
import struct
import threading
from typing import Any, Dict, Iterator, List

import msgpack

#: Largest frame body accepted (a batch report is a few KiB).
MAX_FRAME = 1 << 20

_LEN = struct.Struct("<I")


class FrameError(ValueError):
    """The byte stream does not hold valid frames."""


def encode(msg: Dict[str, Any]) -> bytes:
    """One frame holding ``msg`` (a map with a ``"t"`` type key)."""
    body = msgpack.packb(msg, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise FrameError("frame of %d bytes exceeds the %d-byte limit"
                         % (len(body), MAX_FRAME))
    return _LEN.pack(len(body)) + body


def decode_body(body: bytes) -> Dict[str, Any]:
    """The map inside one frame body; FrameError if it is not one."""
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated classes
        raise FrameError("malformed msgpack frame: %s" % exc) from None
    if not isinstance(msg, dict) or "t" not in msg:
        raise FrameError("frame is not a map with a type key")
    return msg


class FrameDecoder:
    """Splits a byte stream into messages; bytes may come in any pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def messages(self) -> Iterator[Dict[str, Any]]:
        """Every complete message fed so far, in order."""
        buf = self._buf
        pos = 0
        try:
            while len(buf) - pos >= _LEN.size:
                (n,) = _LEN.unpack_from(buf, pos)
                if n == 0 or n > MAX_FRAME:
                    raise FrameError("frame length %d outside 1..%d"
                                     % (n, MAX_FRAME))
                if len(buf) - pos - _LEN.size < n:
                    break
                start = pos + _LEN.size
                body = bytes(buf[start:start + n])
                pos = start + n
                yield decode_body(body)
        finally:
            del buf[:pos]

    @property
    def pending(self) -> int:
        """Bytes held for a frame not complete yet."""
        return len(self._buf)


class Channel:
    """A peer's end of its report channel (a connected stream socket):
    frames go up, commands come down.  ``send`` may be called from any
    thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._decoder = FrameDecoder()

    def send(self, msg: Dict[str, Any]) -> None:
        data = encode(msg)
        with self._lock:
            self.sock.sendall(data)

    def receive(self) -> List[Dict[str, Any]]:
        """Blocks for the next bytes; returns the messages they complete,
        or raises EOFError when the other end is gone."""
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the orchestrator closed the channel")
            self._decoder.feed(data)
            msgs = list(self._decoder.messages())
            if msgs:
                return msgs


__all__ = ["MAX_FRAME", "FrameError", "FrameDecoder", "Channel", "encode",
           "decode_body"]
