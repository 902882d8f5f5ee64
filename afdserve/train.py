"""``python -m afdserve.train``: the same as ``afdserve train`` (see :mod:`afdserve.training`)."""

import sys

from afdserve.training import main

if __name__ == "__main__":
    sys.exit(main())
