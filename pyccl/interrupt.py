"""Blocking core calls that Ctrl-C can stop.

A C call does not return to the interpreter until it is done, so a signal
that arrives meanwhile (SIGINT from Ctrl-C) is handled only afterwards: up
to ``connect_timeout`` for ``Communicator(...)``.  In the main thread, where
Python runs signal handlers, such a call runs in a helper thread while the
main thread waits in short slices; when a handler raises (KeyboardInterrupt),
the call is asked to stop (the core's cancel flag or ``ccl_comm_interrupt``:
it returns within 50 ms), the helper is joined, and the exception goes on.
In any other thread the call runs directly (signals never interrupt it).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")

#: How long the main thread sleeps between looks at pending signals.
_SLICE_S = 0.05


def call_interruptibly(call: Callable[[], T], stop: Callable[[], Any],
                       name: str) -> T:
    """Runs ``call()``; if a signal handler raises meanwhile, runs
    ``stop()`` (which must make ``call`` return soon), waits for ``call``
    to end and re-raises the handler's exception."""
    if threading.current_thread() is not threading.main_thread():
        return call()
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    helper = threading.Thread(target=run, name="pyccl-" + name, daemon=True)
    helper.start()
    try:
        while helper.is_alive():
            helper.join(_SLICE_S)
    except BaseException:
        stop()
        helper.join()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


__all__ = ["call_interruptibly"]
