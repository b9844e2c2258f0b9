"""The model zoo behind one registry (``create_model``, ``list_models``).

Importing this package imports every family module so their builders register.
One file per family: ``lenet``, ...
"""

from . import lenet  # noqa: F401  (registers the builders)
from ._registry import (
    ModelInfo,
    count_parameters,
    create_model,
    list_models,
    model_info,
    parameter_count,
    register_model,
)

__all__ = [
    "ModelInfo",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "parameter_count",
    "register_model",
]
