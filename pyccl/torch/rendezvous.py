"""Forming a pyccl group through torch's store.

torch gives a backend a store shared by the members of the group (a
``PrefixStore`` of its own for every group, over the TCPStore of
``env://`` and ``tcp://``, or the FileStore of ``file://``).  Rank 0 of
the group starts a :class:`~pyccl.Master` in its own process (or uses the
one named by ``Options.master`` / ``PYCCL_MASTER``) and publishes, under
``pyccl/master``, the master's address and a one-off random key; the other
ranks read them.  Then every rank joins with a
:class:`~pyccl.Communicator` at its torch rank, which returns once the
whole group is connected.  Rank 0 deletes the key from the store when the
group shuts down, so a later group that reuses the store and its prefix
never reads a stale address.

Which address.  The master and the peers must listen on an address the
other ranks reach.  ``Options.listen_host`` (``PYCCL_LISTEN_HOST``) says
it; otherwise it is found from the store: a TCPStore on a loopback
address means a single machine (127.0.0.1); a TCPStore elsewhere means
this host's address on the route to the store's host (what a UDP socket
connected there reports); a FileStore means 127.0.0.1 (set
``PYCCL_LISTEN_HOST`` for a FileStore shared between machines).

Keys.  With a key from the environment (``PYCCL_KEY_FILE``, ``PYCCL_KEY``)
every rank already holds it and nothing secret goes into the store.
Otherwise rank 0 makes a fresh one per group: it authenticates every
connection of the group (docs/security.md), and is exactly as private as
torch's store, which anyone who reaches it can read.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import socket
from datetime import timedelta
from typing import Any, Optional, Tuple

from pyccl.communicator import Communicator
from pyccl.keys import resolve_key
from pyccl.master import Master
from pyccl.torch.options import Options

logger = logging.getLogger("pyccl.torch")

#: The store key (under the group's own prefix) rank 0 publishes.
MASTER_KEY = "pyccl/master"


def _store_host(store: Any) -> Optional[str]:
    """The host of the TCPStore under ``store`` (PrefixStores unwrapped),
    or None for other stores."""
    for _ in range(16):
        inner = getattr(store, "underlying_store", None)
        if inner is None:
            break
        store = inner
    host = getattr(store, "host", None)
    return host if isinstance(host, str) and host else None


def _is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
               for info in infos)


def _route_address(host: str) -> str:
    """This machine's address on the route to ``host`` (no packet is
    sent: connecting a UDP socket only picks the route)."""
    family = socket.getaddrinfo(host, None)[0][0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]


def listen_host(store: Any, options: Options) -> str:
    """The address this rank's master and peer sockets listen on."""
    if options.listen_host:
        return options.listen_host
    host = _store_host(store)
    if host is None or _is_loopback(host):
        return "127.0.0.1"
    try:
        return _route_address(host)
    except OSError as exc:
        logger.warning("pyccl: no route to the store's host %s (%s); "
                       "listening on 127.0.0.1 (set PYCCL_LISTEN_HOST)",
                       host, exc)
        return "127.0.0.1"


def _bracket(host: str) -> str:
    return "[%s]" % host if ":" in host else host


def connect(store: Any, rank: int, size: int, timeout: timedelta,
            options: Options) -> Tuple[Communicator, Optional[Master]]:
    """Joins the group: returns this rank's Communicator and, on rank 0
    when it started one, the Master (which the caller must keep and close
    after the Communicator)."""
    host = listen_host(store, options)
    env_key = resolve_key()
    master: Optional[Master] = None
    if rank == 0:
        key = None if env_key is not None else secrets.token_hex(32)
        address = options.master
        if address is None:
            bind = host if _is_loopback(host) else (
                "::" if ":" in host else "0.0.0.0")
            master = Master(host=bind, port=0, key=key)
            address = "%s:%d" % (_bracket(host), master.port)
        store.set(MASTER_KEY, json.dumps({"address": address, "key": key}))
    else:
        # Blocks until rank 0 has published (the store's own timeout).
        info = json.loads(store.get(MASTER_KEY).decode())
        address, key = info["address"], info["key"]
    try:
        # Forming the group gets at least 30 s even when the group's op
        # timeout is shorter (a 1 s timeout is for ops, not for starting
        # processes on a loaded machine).
        seconds = max(30.0, timeout.total_seconds())
        comm = Communicator(address, world_size=size, rank=rank,
                            listen_host=host, key=key,
                            connect_timeout=min(seconds, 2**31 / 1000 - 1),
                            **options.communicator_kwargs())
    except BaseException:
        if master is not None:
            master.close()
        raise
    logger.debug("pyccl: rank %d of %d joined through the master at %s",
                 rank, size, address)
    return comm, master


def unpublish(store: Any) -> None:
    """Removes rank 0's entry from the store (best effort: the store may
    be gone already)."""
    try:
        store.delete_key(MASTER_KEY)
    except Exception:  # noqa: BLE001 - the store's server may have exited
        pass


__all__ = ["connect", "listen_host", "unpublish", "MASTER_KEY"]
