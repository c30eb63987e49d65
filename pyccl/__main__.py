"""``python -m pyccl``: the same as the ``pyccl`` command."""
import sys

from pyccl.cli import main

if __name__ == "__main__":
    sys.exit(main())
