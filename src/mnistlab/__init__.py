"""mnistlab: the MNIST family of datasets, verified and cached, loadable in milliseconds.

    >>> import mnistlab
    >>> (x_train, y_train), (x_test, y_test) = mnistlab.load_data("mnist")
"""

from mnistlab.data import Dataset, get_spec, list_datasets, load_data, load_dataset
from mnistlab.errors import MnistlabError

__version__ = "0.1.0"
__all__ = ["Dataset", "MnistlabError", "get_spec", "list_datasets", "load_data", "load_dataset"]
