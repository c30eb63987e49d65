"""Process hygiene: children die with the orchestrator, and leftovers are
found by a marker in their environment.

Three layers, so that no process outlives a run even when the
orchestrator is SIGKILLed:

1. every child starts with :func:`die_with_parent` (``prctl
   PR_SET_PDEATHSIG`` through ctypes: the kernel SIGKILLs the child when
   the orchestrator dies), then checks that its parent is still the
   orchestrator (it may have died between fork and prctl);
2. a peer also exits when its report channel reaches EOF;
3. every child carries ``PYCCL_STRESS_RUN=<token>`` in its environment;
   after cleanup the orchestrator scans ``/proc`` for that token and
   names (and kills) whatever it finds (:func:`marked_processes`).
"""
from __future__ import annotations

import ctypes
import os
import signal
from typing import List

#: Environment variable carrying the run token into every child.
RUN_ENV = "PYCCL_STRESS_RUN"
#: Environment variable carrying the orchestrator's pid into every child.
PARENT_ENV = "PYCCL_STRESS_PARENT"

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Asks the kernel to SIGKILL this process when its parent dies; exits
    at once if the parent is already gone (it is then no longer
    ``parent_pid``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_PDEATHSIG): %s" % os.strerror(err))
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)


def marked_processes(token: str) -> List[int]:
    """Pids of live processes whose environment holds ``RUN_ENV=token``
    (zombies excluded: they have no environment left)."""
    needle = ("%s=%s" % (RUN_ENV, token)).encode()
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(name))
    return found


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Sends ``sig`` to ``pid``; False when it no longer exists."""
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


__all__ = ["RUN_ENV", "PARENT_ENV", "die_with_parent", "marked_processes",
           "kill_quietly"]
