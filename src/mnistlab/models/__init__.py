"""The model zoo: `create_model(name, num_classes)`, `list_models(pattern)`, `get_model_info(name)`.

Nets are `Net` subclasses with `forward_features`, `forward_head` and `reset_classifier`;
classical models are scikit-learn estimators.
"""

from mnistlab.models.base import Net, count_macs, count_params, has_convolutions
from mnistlab.models.registry import ModelInfo, create_model, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "Net", "count_macs", "count_params", "create_model", "get_model_info", "has_convolutions",
           "list_models", "register_model"]
