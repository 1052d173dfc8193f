import pytest

from mnistlab.training import train


@pytest.fixture(scope="session")
def mnist_run(real_home, tmp_path_factory):
    """A small real MNIST model (the mlp, 2 epochs on all 60,000 digits: about 97% in seconds)."""
    return train("mlp", "mnist", out=tmp_path_factory.mktemp("serve") / "mlp", data_dir=real_home, epochs=2)
