"""``make bench-idle``: the server memory each idle connection costs, per stack.

For each stack and round, on a fresh launch (target pinned to its CPU as
``split_cpus`` places it, default workers, its own control group when one can
be made): a spawned driver process, pinned to the generator CPUs, opens and
closes a few warm-up connections (so lazy imports and first-request caches
are not charged to the connections); once the server answers quickly and uses
no CPU, its memory is read (``before``); the driver opens K connections
(``hold_connections``, HTTP keep-alive or WebSocket) and, when all have been
tried, says so; after SETTLE_S its memory is read again (``held``); then the
connections close. An HTTP connection sends a request only after HTTP_REFRESH_S
of silence, a WebSocket never: nothing is served while the memory is read.
Memory per connection = (held - before) / connections_open_at_end, in KiB,
for PSS, its anonymous part and USS summed over the process tree (psutil,
``smaps_rollup``) and the control group's charge (process memory plus the
kernel memory the kernel accounts to it); what each includes is in
:class:`MemoryReading`. A reading is the highest of SAMPLES samples.

No upstream or database is started: no stack needs one to start (their pools
connect lazily or in the background), and idle connections query neither.

The orchestrator only reads /proc and the control group; the driver's event
loop runs in its own process, so nothing measured waits on this one. Every step
has a time limit; Ctrl-C stops the driver and every stack before exiting.

Modules, bottom first: ``method`` (the constants, BenchError), ``records`` (the
records, their summary and the results file with its format changelog),
``memory`` (reading the memory, waiting until idle), ``driver`` (the driver
process), ``rounds`` (the run loop), ``cli`` (the output and the command line);
``python -m harness.tools.benchidle`` runs ``cli.main``.
"""

from harness.tools.benchidle.cli import format_notes, format_outcome, format_table, main
from harness.tools.benchidle.memory import (
    anonymous_pss_bytes,
    peak_of,
    read_memory,
    sample_memory,
    wait_quiet,
)
from harness.tools.benchidle.method import BenchError
from harness.tools.benchidle.records import (
    READINGS,
    SCHEMA_VERSION,
    IdleBench,
    IdleFailure,
    IdleRound,
    MemoryReading,
    Reading,
    StackSummary,
    kib_per_connection,
    summarise,
    write_results,
)
from harness.tools.benchidle.rounds import BenchSpec, cpu_placement, measure, run_bench, unsupported_reason

__all__ = [
    "READINGS",
    "SCHEMA_VERSION",
    "BenchError",
    "BenchSpec",
    "IdleBench",
    "IdleFailure",
    "IdleRound",
    "MemoryReading",
    "Reading",
    "StackSummary",
    "anonymous_pss_bytes",
    "cpu_placement",
    "format_notes",
    "format_outcome",
    "format_table",
    "kib_per_connection",
    "main",
    "measure",
    "peak_of",
    "read_memory",
    "run_bench",
    "sample_memory",
    "summarise",
    "unsupported_reason",
    "wait_quiet",
    "write_results",
]
