"""Fixtures for tests against real lab hosts."""

import os
import subprocess

import pytest

from labhosts import lab
from labhosts.topology import parse
from virt import Hypervisor


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("integration tests make namespaces, mounts and containers: run them as root")


class Lab:
    """A running lab and ways to reach its hosts."""

    def __init__(self, state):
        self.state = state
        self.name = state["lab"]

    def host(self, name):
        return next(h for h in self.state["hosts"] if h["name"] == name)

    def ssh(self, host, command, check=True, timeout=60, input_text=None):
        proc = subprocess.run(["ssh", "-F", self.state["ssh_config"], "-o", "BatchMode=yes", host, command],
                              capture_output=True, text=True, timeout=timeout, input=input_text, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("ssh %s %r failed (rc=%d): %s" % (host, command, proc.returncode, proc.stderr))
        return proc


@pytest.fixture(scope="session")
def lab_factory():
    """Bring labs up by spec; every lab made is torn down at the end, also on failure."""
    made = []

    def make(spec):
        topo = parse(spec)
        made.append(topo.lab)
        return Lab(lab.up(topo, fresh=True, log=lambda _msg: None))

    yield make
    for name in made:
        lab.down(name, log=lambda _msg: None)


@pytest.fixture(scope="session")
def hypervisor(lab_factory):
    """A lab host with libvirt and qemu installed through its apt, for tests
    that boot TCG guests (see virt.py); guests left defined are removed."""
    made = lab_factory({"lab": "virt-hv", "hosts": [
        {"name": "hv1", "groups": ["hypervisors"], "devices": ["kvm", "tun"]},
    ]})
    host = Hypervisor(made.state, "hv1")
    host.install_libvirt()
    yield host
    host.cleanup()
