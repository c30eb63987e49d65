"""The Master: the coordinator that peers register with.

It forms groups, fixes the ring order and numbers each group with an epoch.
It moves no tensor data, so one master serves a whole job.  A master runs
its own thread inside the C core; this object only owns it.
"""
from __future__ import annotations

import threading
from operator import attrgetter
from typing import Any, Optional

from pyccl.log import start_reader
from pyccl._lib import ffi, lib
from pyccl.errors import Closed, InvalidArgument, create_checked
from pyccl.keys import KeyLike, configure as configure_key
from pyccl.stats import MasterStats, read_master_stats


class Master:
    """A running master, bound and listening once the constructor returns.

    Args:
        host: address to bind (``"0.0.0.0"`` to accept peers from other
            hosts).
        port: TCP port; 0 picks a free one (read it back from ``.port``).
        key: the run's pre-shared key (bytes or str, 16..1024 bytes).
            Default: ``PYCCL_KEY_FILE`` or ``PYCCL_KEY`` from the
            environment (see :mod:`pyccl.keys`).  With a key, every
            connection must prove it holds the same key.
        key_file: read the key from this file instead.
        allow_insecure: without a key, accept peers from other hosts and
            bind non-loopback addresses anyway (a warning is printed).
            Default: ``PYCCL_ALLOW_INSECURE``, else False (loopback only).
        reorder_slow_links: when a link of the ring is flagged slow, the
            next ``update_topology`` re-plans the ring order, as if the
            members had called ``optimize_topology`` (off by default;
            docs/observability.md, "Policies on slow links").
        expel_slow_after: a member whose sending link was flagged slow in
            this many consecutive STATS reports of its receivers is dropped
            at the next ``update_topology`` (0, the default: never).

    Use it as a context manager, or call :meth:`close`; a master that is
    garbage collected is closed too.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 key: Optional[KeyLike] = None,
                 key_file: Optional[str] = None,
                 allow_insecure: Optional[bool] = None,
                 reorder_slow_links: bool = False,
                 expel_slow_after: int = 0) -> None:
        if not isinstance(host, str) or not host:
            raise InvalidArgument("host must be a non-empty string, not %r"
                                  % (host,))
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidArgument("port must be an int in 0..65535, not %r"
                                  % (port,))
        if (not isinstance(expel_slow_after, int) or
                isinstance(expel_slow_after, bool) or
                not 0 <= expel_slow_after <= 2**31 - 1):
            raise InvalidArgument("expel_slow_after must be an int >= 0, "
                                  "not %r" % (expel_slow_after,))
        self._host = host
        self._lock = threading.Lock()
        cfg = ffi.new("ccl_master_config *")
        lib.ccl_master_config_init(cfg)
        host_c = ffi.new("char[]", host.encode())
        cfg.host = host_c
        cfg.port = port
        cfg.reorder_slow_links = 1 if reorder_slow_links else 0
        cfg.expel_slow_after = expel_slow_after
        key_c = configure_key(cfg, key, key_file, allow_insecure)
        self._authenticated = key_c is not None
        start_reader()  # before the core's first line
        self._ptr = create_checked(lib.ccl_master_create, cfg, "ccl_master",
                                   lib.ccl_master_destroy)
        self._port = int(lib.ccl_master_port(self._ptr))

    def _handle(self) -> Any:
        ptr = self._ptr
        if ptr is None:
            raise Closed("the master is closed")
        return ptr

    # Fixed once the master listens: read-only attributes.
    host = property(attrgetter("_host"),
                    doc="The address the master is bound to (str).")
    port = property(attrgetter("_port"),
                    doc="The TCP port the master listens on (int; the "
                        "one the system picked for port=0).")
    authenticated = property(attrgetter("_authenticated"),
                             doc="True if the master requires the key from "
                                 "every peer.")

    @property
    def address(self) -> str:
        """``"host:port"``, as a Communicator takes it."""
        host = self._host
        if ":" in host:  # IPv6 literal
            host = "[%s]" % host
        return "%s:%d" % (host, self._port)

    @property
    def epoch(self) -> int:
        """Number of groups formed so far (one per epoch)."""
        with self._lock:  # close() in another thread waits for this
            return int(lib.ccl_master_epoch(self._handle()))

    def stats(self) -> MasterStats:
        """The group as its members last reported it (members report at
        most every ``stats_report`` seconds, after ops finished): per
        member ops and bytes, per link receive rate and RTT, and the
        master's verdict on slow links (docs/observability.md)."""
        with self._lock:
            return read_master_stats(self._handle())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._ptr is None

    def close(self) -> None:
        """Stops the master's thread, closes its connections.  Idempotent."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            ffi.gc(ptr, None)  # detach the safety net: destroy exactly once
            lib.ccl_master_destroy(ptr)

    def __enter__(self) -> "Master":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "listening"
        return "<pyccl.Master %s %s>" % (self.address, state)


__all__ = ["Master"]
