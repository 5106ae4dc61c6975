"""The GPU checks use the training tests' tiny model."""

from tests.train.conftest import tiny_model  # noqa: F401
