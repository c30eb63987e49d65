"""The suite's test class for one backend (see the package docstring).

The environment says which: ``PYCCL_SUITE_BACKEND`` (gloo or pyccl) and
``WORLD_SIZE``.  Spawned ranks import this module again with the same
environment, so everything here runs at import.
"""
import os
import tempfile

BACKEND_UNDER_TEST = os.environ.get("PYCCL_SUITE_BACKEND", "pyccl")

# Decorators evaluate against gloo's feature set (see the package docstring).
os.environ["BACKEND"] = "gloo"
os.environ.setdefault("WORLD_SIZE", "2")
if "TEMP_DIR" not in os.environ:
    os.environ["TEMP_DIR"] = tempfile.mkdtemp(prefix="pyccl-suite-")
if not os.environ.get("INIT_METHOD", "").startswith("file://"):
    os.environ["INIT_METHOD"] = "file://" + os.path.join(
        os.environ["TEMP_DIR"], "init_file")

import torch  # noqa: E402
import torch.testing._internal.common_distributed as common  # noqa: E402
import torch.testing._internal.distributed.distributed_test as dt  # noqa: E402

class CpuBackendName(str):
    """The name "pyccl" that also compares equal to "gloo".

    Some cases branch at run time on ``BACKEND == "gloo"`` (or ``"mpi" or
    "gloo"``) to choose their CPU code path and have no branch for any
    other CPU backend (``_test_accumulate_gradients_no_sync`` then fails
    with UnboundLocalError).  With this name they take gloo's CPU path;
    ``init_process_group(backend=BACKEND)`` still gets "pyccl" (its
    ``upper()``/``lower()`` are plain strings), and a case that checks
    something only gloo does (a message naming ProcessGroupGloo) fails,
    as it should.
    """

    def __eq__(self, other):
        return other in ("gloo", "pyccl") if isinstance(other, str) \
            else NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = str.__hash__


if BACKEND_UNDER_TEST == "pyccl":
    import pyccl.torch  # noqa: E402,F401 - registers the backend

    dt.BACKEND = CpuBackendName("pyccl")
    # torch's dist.monitored_barrier refuses non-gloo groups before asking
    # them; pyccl offers the opt-in that routes pyccl groups to its own.
    pyccl.torch.patch_monitored_barrier()
    # What the cases ask at run time about "their" backend: pyccl has what
    # gloo has on CPU.
    for feature in ("gpu", "cuda", "ddp", "subgroup"):
        common.DistTestCases.backend_feature[feature].add("pyccl")


class TestDistBackendWithSpawn(dt.TestDistBackend,
                               dt.DistributedTest._DistTestBase):
    """What test_distributed_spawn.py defines for gloo/nccl/ucc."""

    def setUp(self):
        super().setUp()
        self._spawn_processes()
        torch.backends.cudnn.flags(enabled=True, allow_tf32=False).__enter__()
