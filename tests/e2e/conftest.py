"""The end-to-end test's lab: the whole lab cloud of `make lab`, under a name
of its own that carries this checkout's mark (see tests/integration)."""

import hashlib
import os

import pytest

CHECKOUT = hashlib.sha256(os.path.dirname(os.path.dirname(os.path.abspath(__file__))).encode()).hexdigest()[:6]


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("the end-to-end test makes namespaces, mounts and containers: run it as root")


@pytest.fixture(scope="session")
def lab_name():
    return "e2e-" + CHECKOUT
