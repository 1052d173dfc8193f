"""mnistlab: the MNIST family of datasets, verified and cached, with a model zoo and a training engine.

    >>> import mnistlab
    >>> (x_train, y_train), (x_test, y_test) = mnistlab.load_data("mnist")
    >>> run = mnistlab.train(model="cnn", dataset="mnist", epochs=3)
    >>> run.metrics["test_accuracy"], run.predict(x_test[:5])
"""

from mnistlab.data import Dataset, get_spec, list_datasets, load_data, load_dataset
from mnistlab.errors import MnistlabError

__version__ = "0.1.0"
__all__ = ["Dataset", "MnistlabError", "create_model", "get_spec", "list_datasets", "list_models", "load_data",
           "load_dataset", "load_run", "train"]

# Importing PyTorch takes about a second; the data layer does not need it, so these load on first use.
_LAZY = {"train": "mnistlab.training", "load_run": "mnistlab.run", "create_model": "mnistlab.models",
         "list_models": "mnistlab.models"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
