"""The launcher every child of the orchestrator runs first:
``python -m stress.child ROLE ARGS...``.

It arms the parent-death signal (:func:`stress.procs.die_with_parent`)
before anything else, then becomes the role:

- ``peer CONFIG_JSON``: a peer (:mod:`stress.peer`);
- ``master ARGS``: ``pyccl master ARGS`` (the real command, so a master
  restart is a restart of exactly what users run);
- ``exec PROGRAM ARGS``: any other program (the link-fault helpers),
  which keeps the parent-death signal across ``execve``.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from stress.procs import PARENT_ENV, die_with_parent


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parent = int(os.environ.get(PARENT_ENV, "0") or 0)
    if parent:
        die_with_parent(parent)
    if not argv:
        print("usage: python -m stress.child peer|master|exec ...",
              file=sys.stderr)
        return 2
    role, rest = argv[0], argv[1:]
    if role == "peer":
        from stress.peer import main as peer_main
        return peer_main(rest)
    if role == "master":
        from pyccl.cli import main as pyccl_main
        return pyccl_main(["master"] + rest)
    if role == "exec" and rest:
        os.execvp(rest[0], rest)
    print("stress.child: unknown role %r" % role, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
