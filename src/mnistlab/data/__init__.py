"""The data layer: the MNIST family's catalog, verified sources, the cache, and loading.

    >>> from mnistlab.data import load_dataset
    >>> ds = load_dataset("mnist", "train")   # (60000, 28, 28) uint8, memory-mapped
"""

from mnistlab.data.cache import data_home
from mnistlab.data.catalog import DatasetSpec, FileSpec, get_spec, list_datasets, register_dataset
from mnistlab.data.dataset import Dataset, load_data, load_dataset
from mnistlab.data.fetch import fetch, import_files, verify
from mnistlab.data.idx import read_idx, write_idx

__all__ = ["Dataset", "DatasetSpec", "FileSpec", "data_home", "fetch", "get_spec", "import_files", "list_datasets",
           "load_data", "load_dataset", "read_idx", "register_dataset", "verify", "write_idx"]
