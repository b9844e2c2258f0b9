"""deepnn: the "Deep NN" lecture (CNNs, RNNs, Transformers) as a library and CLI.

    >>> import deepnn
    >>> net = deepnn.create_model("lenet", num_classes=10)
    >>> deepnn.list_models("lenet*")
    ['lenet', 'lenet_modern']
"""

from .errors import UserError
from .models import create_model, list_models, register_model
from .train import Config, Trainer

__version__ = "0.1.0"

__all__ = ["Config", "Trainer", "UserError", "create_model", "list_models", "register_model", "__version__"]
