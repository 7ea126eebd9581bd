"""The model layer: typed, validated configuration and result records, and reading them from files.

Every record is a frozen pydantic model with an explicit JSON round trip
(``model_dump(mode="json")`` / ``model_validate``). The package imports no other
layer of the harness. Its modules, each importing only those listed before it:

- :mod:`harness.model.stages`: a scenario's stages and the phases they are measured as.
- :mod:`harness.model.config`: target, SLO, saturation search and cell records; the
  bounds (``MAX_*``, ``QUICK_*``).
- :mod:`harness.model.scenario`: the scenario and its endpoint tables.
- :mod:`harness.model.records`: result records, ``SCHEMA_VERSION`` and the results
  format's changelog.
- :mod:`harness.model.files`: TOML reading and :class:`ConfigError`'s wording.

Every public name is re-exported here, so ``from harness.model import Scenario`` works.
"""

from harness.model.config import (
    MAX_CONCURRENCY,
    MAX_CPUS,
    MAX_DURATION_S,
    MAX_LEVELS,
    MAX_MEMORY_MIB,
    MAX_RATE,
    MAX_REPEATS,
    MAX_WORKERS,
    QUICK_BISECT_STEPS,
    QUICK_FACTOR,
    QUICK_MAX_WINDOW_S,
    QUICK_MIN_WARMUP_S,
    QUICK_MIN_WINDOW_S,
    Cell,
    DriverName,
    Frozen,
    Interface,
    LoadModel,
    Saturation,
    SettingValue,
    Slo,
    TargetConfig,
)
from harness.model.files import (
    ConfigError,
    discover_targets,
    explain,
    load_scenario,
    load_target,
    read_toml,
    suggest,
)
from harness.model.records import (
    MANIFEST_KEYS_RENAMED_IN_3,
    MEASUREMENT_KEYS_RENAMED_IN_3,
    SCHEMA_VERSION,
    TIMESERIES_COLUMNS_RENAMED_IN_3,
    BoundReason,
    DatabaseRun,
    Environment,
    Errors,
    LatencyMs,
    Measurement,
    MemoryPerConnection,
    Placement,
    RunFailure,
    RunManifest,
    TargetRun,
    upgrade_manifest,
    upgrade_measurement,
)
from harness.model.scenario import (
    DEFAULT_MESSAGE_BYTES,
    EndpointKind,
    RequestSpec,
    Scenario,
    is_folder_name,
    is_path,
    sse_parameters,
)
from harness.model.stages import Phase, Stage, StageKind, phases

__all__ = [
    "DEFAULT_MESSAGE_BYTES",
    "MANIFEST_KEYS_RENAMED_IN_3",
    "MAX_CONCURRENCY",
    "MAX_CPUS",
    "MAX_DURATION_S",
    "MAX_LEVELS",
    "MAX_MEMORY_MIB",
    "MAX_RATE",
    "MAX_REPEATS",
    "MAX_WORKERS",
    "MEASUREMENT_KEYS_RENAMED_IN_3",
    "QUICK_BISECT_STEPS",
    "QUICK_FACTOR",
    "QUICK_MAX_WINDOW_S",
    "QUICK_MIN_WARMUP_S",
    "QUICK_MIN_WINDOW_S",
    "SCHEMA_VERSION",
    "TIMESERIES_COLUMNS_RENAMED_IN_3",
    "BoundReason",
    "Cell",
    "ConfigError",
    "DatabaseRun",
    "DriverName",
    "EndpointKind",
    "Environment",
    "Errors",
    "Frozen",
    "Interface",
    "LatencyMs",
    "LoadModel",
    "Measurement",
    "MemoryPerConnection",
    "Phase",
    "Placement",
    "RequestSpec",
    "RunFailure",
    "RunManifest",
    "Saturation",
    "Scenario",
    "SettingValue",
    "Slo",
    "Stage",
    "StageKind",
    "TargetConfig",
    "TargetRun",
    "discover_targets",
    "explain",
    "is_folder_name",
    "is_path",
    "load_scenario",
    "load_target",
    "phases",
    "read_toml",
    "sse_parameters",
    "suggest",
    "upgrade_manifest",
    "upgrade_measurement",
]
