"""``python -m stellar.registry``: see :mod:`stellar.registry.cli`."""

import sys

from stellar.registry.cli import main

if __name__ == "__main__":
    sys.exit(main())
