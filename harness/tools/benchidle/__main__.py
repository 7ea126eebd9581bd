"""``python -m harness.tools.benchidle`` (``make bench-idle``): :func:`harness.tools.benchidle.cli.main`."""

import sys

from harness.tools.benchidle.cli import main

if __name__ == "__main__":
    sys.exit(main())
