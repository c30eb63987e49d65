"""torch's own distributed test suite against backend "pyccl", with gloo as
the control in the same run.

torch's wheel ships the cases (``torch.testing._internal.distributed.
distributed_test``, class ``DistributedTest._DistTestBase``) but not the
driver (``test/distributed/test_distributed_spawn.py``, which accepts only
gloo, nccl and ucc).  This package is our driver:

- :mod:`tests.torch_suite.cases`: the test class, built for the backend
  named by ``PYCCL_SUITE_BACKEND`` (imported by the spawned ranks too);
- :mod:`tests.torch_suite.worker`: runs the cases for one backend and one
  world size in a process of its own, writes each case's outcome as JSON;
- :mod:`tests.torch_suite.__main__`: the runner: every world size, gloo
  then pyccl, and the counts side by side; exit status 1 when a case that
  gloo passes does not pass with pyccl;
- :mod:`tests.torch_suite.subsets`: the short list CI runs
  (``tests/test_torch_suite.py``).

The decorators of the suite decide at import time which cases run for
which backend, mostly by asking ``BACKEND == "gloo"``.  Both runs import
the module as gloo's, then set the module's ``BACKEND`` to the backend
under test, so pyccl runs exactly the cases gloo runs ("every case gloo
passes on CPU must pass"), and the cases' own code (``init_process_group
(backend=BACKEND)``) uses pyccl.  Where a case's body branches on
``BACKEND == "gloo"`` to pick its CPU path, pyccl's name compares equal to
"gloo" so it takes that path (see ``cases.CpuBackendName``).

The full run (about an hour and a half on 2 quiet cores; about 4.5 hours
of case time on 2 cores loaded 4-16, 2026-11-30)::

    python -m tests.torch_suite --world-sizes 2,3

Options: ``--backends gloo,pyccl``, ``-k SUBSTRING`` (repeatable),
``--subset ci``, ``--out-dir DIR`` (a run resumes there), ``--report-only``,
``--timeout S`` (per case).
"""
