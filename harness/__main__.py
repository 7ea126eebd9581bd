"""``python -m harness``: the ``gwbench`` command run as a module (as the tests run it)."""

import sys

from harness.entry import main

code = main()
# A KeyboardInterrupt raised inside code run by exec() or eval() of a string (dataclasses and
# namedtuple build their methods so, while the CLI is imported) marks the interpreter as ended by
# an uncaught Ctrl-C even when main() caught it: run as ``python -m``, Python then kills itself
# with SIGINT on exit (the flag of bpo-1054041, python/cpython#11862), and the exit code 130 is
# lost. exec() of a string clears that flag before it runs; this one runs nothing.
exec("")
sys.exit(code)
