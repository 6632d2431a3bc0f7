"""The sweep tests' fixtures (a spec writer, a fake trainer) for the ``lmix sweep`` command's tests."""

from tests.experiments.sweep.conftest import fake_train, write_spec

__all__ = ["fake_train", "write_spec"]
