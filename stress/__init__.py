"""``pyccl stress``: a multi-process churn tester for pyccl.

An orchestrator (asyncio, uvloop when installed) starts a master and N
peer processes, applies a reproducible churn schedule (SIGKILL, SIGSTOP,
graceful leaves, joins and join storms, master restarts, and, as root in
network namespaces, link faults), and checks that nothing hangs and
nothing diverges: every peer verifies each collective's result exactly,
checks that failed ops gave their input back, and reports every op's
outcome and hash over a framed msgpack channel; the orchestrator compares
the members of each epoch op by op.  See ``docs/stress.md``.

Modules, one concern each:

- :mod:`stress.wire`: length-prefixed msgpack frames (codec without I/O);
- :mod:`stress.workload`: the op plan and its exact expected results;
- :mod:`stress.peer`: the body of one peer process;
- :mod:`stress.child`: the launcher every child starts with (dies with
  the orchestrator);
- :mod:`stress.procs`: process hygiene (parent-death signal, run marker);
- :mod:`stress.children`: the master and peer processes as asyncio
  objects (spawn, report channel, restart);
- :mod:`stress.schedule`, :mod:`stress.scenarios`: the churn schedule and
  the named presets;
- :mod:`stress.ledger`: agreement, violations, recovery times;
- :mod:`stress.orchestrator`: the asyncio run;
- :mod:`stress.netns`: network namespaces and link faults (root);
- :mod:`stress.display`, :mod:`stress.report`: live display, final table,
  JSON, PNG timeline;
- :mod:`stress.cli`: the command line (``pyccl stress``, ``pyccl-stress``).
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """Entry point of ``pyccl-stress``; returns the exit status."""
    from stress.cli import main as cli_main
    return cli_main(argv)
