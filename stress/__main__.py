"""``python -m stress``: the same as ``pyccl stress``."""
import sys

from stress.cli import main

sys.exit(main())
