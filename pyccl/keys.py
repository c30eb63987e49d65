"""Where the pre-shared key comes from, and how to make one.

Every connection of a run (peer to master, peer to peer, shared-state
transfers) proves that both ends hold the same key (``docs/security.md``).
:func:`resolve_key` picks the key, first match wins:

1. the ``key`` argument (``bytes``, or ``str`` taken as UTF-8);
2. the ``key_file`` argument;
3. the ``PYCCL_KEY_FILE`` environment variable (a path);
4. the ``PYCCL_KEY`` environment variable (the key itself).  It is
   removed from the environment once read, so that processes started
   later do not inherit it; the process remembers it for its later
   Masters and Communicators (:func:`forget_environment_key` drops it).
   Pass the key on to workers explicitly, or prefer ``PYCCL_KEY_FILE``.

No key at all is allowed: pyccl then talks over loopback only, unless
``allow_insecure`` (or ``PYCCL_ALLOW_INSECURE=1``) says otherwise.

A key file holds the key's bytes; trailing whitespace (the newline an
editor adds) is not part of the key.  :func:`generate_key` makes a random
one; ``pyccl keygen FILE`` writes it with mode 0600.
"""
from __future__ import annotations

import os
import secrets
import stat
from typing import Any, Optional, Union

from pyccl._lib import ffi
from pyccl.errors import InvalidArgument, warn_caller

#: Shortest and longest key accepted (bytes); the C core checks the same.
KEY_MIN = 16
KEY_MAX = 1024

KeyLike = Union[bytes, bytearray, memoryview, str]


class KeyFileWarning(UserWarning):
    """A key file that other users of the machine can read."""


def generate_key() -> str:
    """A fresh random key: 32 random bytes as 64 hex characters (text, so
    it survives environment variables, YAML files and copy-paste)."""
    return secrets.token_hex(32)


def read_key_file(path: Union[str, os.PathLike]) -> bytes:
    """The key stored in a file (trailing whitespace dropped).  Warns with
    :class:`KeyFileWarning` if group or others may read the file."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(KEY_MAX + 4096)
    except OSError as exc:
        raise InvalidArgument("cannot read the key file %s: %s"
                              % (os.fspath(path), exc.strerror)) from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        warn_caller("key file %s can be read by other users (mode %o); "
                    "chmod 600 it" % (os.fspath(path),
                                      stat.S_IMODE(st.st_mode)),
                    KeyFileWarning)
    return _checked(data.rstrip(), "the key file %s" % os.fspath(path))


def _checked(key: bytes, where: str) -> bytes:
    if not KEY_MIN <= len(key) <= KEY_MAX:
        raise InvalidArgument(
            "%s holds a key of %d bytes; a key must have %d..%d bytes "
            "(make one with `pyccl keygen`)"
            % (where, len(key), KEY_MIN, KEY_MAX))
    return key


def resolve_key(key: Optional[KeyLike] = None,
                key_file: Optional[Union[str, os.PathLike]] = None
                ) -> Optional[bytes]:
    """The key to use, from the arguments or the environment, or None."""
    if key is not None and key_file is not None:
        raise InvalidArgument("pass key or key_file, not both")
    if key is not None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        if not isinstance(key, (bytes, bytearray, memoryview)):
            raise InvalidArgument("key must be bytes or str, not %s"
                                  % type(key).__name__)
        return _checked(bytes(key), "the key argument")
    if key_file is not None:
        return read_key_file(key_file)
    path = os.environ.get("PYCCL_KEY_FILE")
    if path:
        return read_key_file(path)
    return _environment_key()


# PYCCL_KEY, once read.  The variable is taken out of the environment at
# the first read (os.environ.pop also unsets it in the C environment), so
# processes started afterwards (workers, shells, anything a library
# launches) do not inherit the key; this process keeps it here for the
# Masters and Communicators it creates later.
_env_key: Optional[bytes] = None


def _environment_key() -> Optional[bytes]:
    global _env_key
    text = os.environ.pop("PYCCL_KEY", None)
    if text:
        _env_key = None
        _env_key = _checked(text.encode("utf-8"), "PYCCL_KEY")
    return _env_key


def forget_environment_key() -> None:
    """Forgets the key read from ``PYCCL_KEY`` (it is no longer in the
    environment either: see :func:`resolve_key`)."""
    global _env_key
    _env_key = None


def resolve_allow_insecure(allow_insecure: Optional[bool]) -> bool:
    """The argument if given, else ``PYCCL_ALLOW_INSECURE`` ("1", "true",
    "yes" mean yes)."""
    if allow_insecure is not None:
        return bool(allow_insecure)
    value = os.environ.get("PYCCL_ALLOW_INSECURE", "").strip().lower()
    return value in ("1", "true", "yes", "on")


def configure(cfg: Any, key: Optional[KeyLike],
              key_file: Optional[Union[str, os.PathLike]],
              allow_insecure: Optional[bool]) -> Any:
    """Fills the key fields of a ``ccl_master_config`` or
    ``ccl_comm_config``.  Returns the cffi buffer the key lives in (keep it
    until the create call, which copies it), or None without a key."""
    key_bytes = resolve_key(key, key_file)
    key_c = None
    if key_bytes is not None:
        key_c = ffi.from_buffer(key_bytes)
        cfg.key = key_c
        cfg.key_len = len(key_bytes)
    cfg.allow_insecure = 1 if resolve_allow_insecure(allow_insecure) else 0
    return key_c


def write_key_file(path: Union[str, os.PathLike]) -> str:
    """Writes a fresh key to a new file readable by its owner only (mode
    0600) and returns the key.  Refuses to overwrite an existing file."""
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


__all__ = ["resolve_key", "resolve_allow_insecure", "configure", "generate_key",
           "read_key_file", "write_key_file", "KeyFileWarning", "KEY_MIN",
           "KEY_MAX"]
