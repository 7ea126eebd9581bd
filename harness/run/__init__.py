"""Run a scenario: the cell loop (:mod:`.loop`), measurement building (:mod:`.measure`),
the saturation search (:mod:`.search`).

:func:`execute` runs a :class:`RunSpec` and stores it; :func:`preflight` checks
beforehand that it can be stored and driven, and :func:`check_external` that the
user's app answers each endpoint (:mod:`.precheck`); :func:`blocks_for` is the plan
without running it; :func:`every_request_failed` says when no request of a cell or a run succeeded.
"""

from harness.launch.services import UPSTREAM
from harness.run.loop import blocks_for, execute
from harness.run.measure import every_request_failed
from harness.run.precheck import check_external
from harness.run.spec import (
    ExternalTarget,
    PreflightError,
    RunOutcome,
    RunSpec,
    check_writable,
    descriptors_needed,
    preflight,
)

__all__ = [
    "UPSTREAM",
    "ExternalTarget",
    "PreflightError",
    "RunOutcome",
    "RunSpec",
    "blocks_for",
    "check_external",
    "check_writable",
    "descriptors_needed",
    "every_request_failed",
    "execute",
    "preflight",
]
