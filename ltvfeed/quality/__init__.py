"""Data-quality gates on the warehouse: Great Expectations Core suites defined in code, run per layer.

Import-light on purpose (the CLI and the DAG import this at start-up): GX loads when a gate runs.
"""

from ltvfeed.quality.config import GateConfig
from ltvfeed.quality.gate import default_as_of, run_gate
from ltvfeed.quality.outcomes import CheckOutcome, DataQualityError, GateResult
from ltvfeed.quality.rules import LAYERS, Layer

__all__ = [
    "LAYERS",
    "CheckOutcome",
    "DataQualityError",
    "GateConfig",
    "GateResult",
    "Layer",
    "default_as_of",
    "run_gate",
]
