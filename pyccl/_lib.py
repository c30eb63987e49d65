"""The raw cffi bindings: ``ffi`` and ``lib`` of the compiled C core.

Nothing here is friendly; the rest of the package wraps it.  Every function
of ``lib`` releases the GIL while it runs (cffi API mode does so by
default), so blocking waits in C never stall other Python threads.
"""
try:
    from pyccl._ccl import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "pyccl's C extension (pyccl._ccl) could not be loaded: %s. "
        "Install the package with `pip install .` (a C compiler is needed), "
        "or build it in a checkout with `python bindings/build_ccl.py`." % exc
    ) from exc

__all__ = ["ffi", "lib"]
