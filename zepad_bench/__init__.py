"""zepad-bench: downstream-agnostic adversarial examples and defenses for pre-trained encoders."""

from zepad_bench.hookspecs import hookimpl
from zepad_bench.interfaces import (
    Attack,
    Branch,
    DatasetSource,
    DefendedModel,
    Defense,
    EncoderSource,
    Metric,
    Task,
    TaskData,
)
from zepad_bench.registry import load_registry

__version__ = "0.1.0"
__all__ = [
    "Attack",
    "Branch",
    "DatasetSource",
    "DefendedModel",
    "Defense",
    "EncoderSource",
    "Metric",
    "Task",
    "TaskData",
    "hookimpl",
    "load_registry",
]
