"""pyccl: fault-tolerant collective communication for numpy and torch.

A :class:`Master` coordinates; each process joins a group with a
:class:`Communicator` and runs collectives (all-reduce, broadcast,
all-gather, reduce-scatter, reduce, gather, scatter, all-to-all, their
sizes-per-rank forms, barrier) and point-to-point send/recv on numpy
arrays or CPU torch tensors, blocking or asynchronously (:class:`Work`,
with a torch-style ``get_future()``).  Argument names and order follow
torch.distributed.  Every failure raises a subclass of :class:`CclError`
that also inherits the matching builtin.

``import pyccl.torch`` registers pyccl as the torch.distributed backend
"pyccl" (docs/torch.md).

Example::

    import numpy as np, pyccl
    with pyccl.Communicator("127.0.0.1:29400", world_size=2) as comm:
        x = np.ones(4, dtype=np.float32)
        comm.all_reduce(x)          # x == 2 on both ranks
"""
from pyccl._lib import ffi as _ffi, lib as _lib
from pyccl.communicator import Communicator
from pyccl.dtypes import ReduceOp
from pyccl.errors import (Aborted, AuthError, CclError, Closed, CommIOError,
                          InternalError, InvalidArgument, InvalidUsage,
                          MasterUnreachable, Mismatch, OutOfMemory, PeerLost,
                          Interrupted, ProtocolError, Rejected, StillRunning, Timeout,
                          TooFewPeers, VersionMismatch)
from pyccl.master import Master
from pyccl.retry import run_with_retry
from pyccl.shared_state import SharedState, SyncResult, sync_shared_state
from pyccl.work import Work

__version__ = "0.1.0"


def c_version() -> str:
    """Version of the compiled C core ("major.minor.patch")."""
    return _ffi.string(_lib.ccl_version()).decode("ascii")


#: The wire protocol version spoken by this build.
PROTOCOL_VERSION: int = _lib.CCL_PROTOCOL_VERSION

__all__ = [
    "Master", "Communicator", "Work", "ReduceOp", "c_version",
    "SharedState", "SyncResult", "sync_shared_state", "run_with_retry",
    "PROTOCOL_VERSION", "__version__",
    "CclError", "InvalidArgument", "OutOfMemory", "CommIOError", "Timeout",
    "PeerLost", "ProtocolError", "VersionMismatch", "Mismatch", "Aborted",
    "MasterUnreachable", "TooFewPeers", "Closed", "InvalidUsage", "AuthError",
    "Rejected", "InternalError", "StillRunning", "Interrupted",
]
