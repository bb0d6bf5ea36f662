"""Fixtures for tests against real lab hosts."""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from labhosts import ceph as ceph_lab
from labhosts import lab
from labhosts.topology import parse
from virt import Hypervisor


# Labs of this checkout carry its mark, so test runs of two checkouts on one
# machine (a CI clone and a working tree) never tear down each other's labs.
CHECKOUT = hashlib.sha256(os.path.dirname(os.path.dirname(os.path.abspath(__file__))).encode()).hexdigest()[:6]


def lab_name(name):
    """The name of lab ``name`` in this checkout."""
    suffix = "-" + CHECKOUT
    return name if name.endswith(suffix) else name + suffix


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
        topo = parse(dict(spec, lab=lab_name(spec["lab"])))
        made.append(topo.lab)
        return Lab(lab.up(topo, fresh=True, log=lambda _msg: None))

    yield make
    for name in made:
        lab.down(name, log=lambda _msg: None)


# holds an RBD image open, as a running VM does, until SIGTERM
HOLDER = """
import signal, sys, time
import rados, rbd
conf, keyring, user, pool, name = sys.argv[1:6]
cluster = rados.Rados(conffile=conf, rados_id=user, conf={"keyring": keyring})
cluster.connect(timeout=30)
ioctx = cluster.open_ioctx(pool)
image = rbd.Image(ioctx, name)
def stop(_signum, _frame):
    image.close()
    ioctx.close()
    cluster.shutdown()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("open", flush=True)
while True:
    time.sleep(1)
"""


class CephCluster:
    """A Ceph cluster the machine reaches as a client: ``conf`` and ``keyring``
    are files on the machine for ``client.<user>``; ``pool`` is an RBD pool."""

    def __init__(self, conf, keyring, user="admin", pool="vms", storage=None):
        self.conf = conf
        self.keyring = keyring
        self.user = user
        self.pool = pool
        # the lab that runs the cluster (its storage host is stor1), when known
        self.storage = storage

    @contextlib.contextmanager
    def osd_stopped(self):
        """The cluster's only OSD stopped for the block (its pool's I/O stalls),
        started again at its end, also on failure, and waited for: every
        placement group active again."""
        if self.storage is None:
            pytest.skip("the cluster's storage host is not known (HARDWAY_TEST_CEPH without HARDWAY_TEST_CEPH_LAB)")
        self.storage.ssh("stor1", "systemctl stop ceph-osd@0")
        try:
            yield
        finally:
            # Ceph's unit allows three starts in 30 minutes
            self.storage.ssh("stor1", "systemctl reset-failed ceph-osd@0; systemctl start ceph-osd@0")
            deadline = time.monotonic() + 180
            while True:
                stat = json.loads(self._cli("ceph", ("pg", "stat", "--format", "json"), True, text=True).stdout)
                states = stat.get("pg_summary", stat).get("num_pg_by_state", [])
                # "stale": no OSD has reported on it since it came back
                if states and all("active" in entry["name"].split("+") and "stale" not in entry["name"].split("+")
                                  for entry in states):
                    break
                assert time.monotonic() < deadline, "the OSD is not back: %s" % stat
                time.sleep(1)

    def connection(self):
        """The module options that reach this cluster."""
        return {"conf": self.conf, "keyring": self.keyring, "user": self.user}

    @contextlib.contextmanager
    def hold(self, name):
        """A separate process with image ``name`` of the pool open (a watcher,
        as a running VM is), stopped by its PID when the block ends."""
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, self.conf, self.keyring, self.user, self.pool, name],
                                stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.strip() == "open", "the holder did not open %s" % name
            yield proc
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=20)
            proc.stdout.close()

    def rbd(self, *args, check=True):
        """The rbd CLI against this cluster (for checks from outside the module)."""
        return self._cli("rbd", args, check, text=True)

    def rados(self, *args, check=True, input_bytes=None):
        """The rados CLI on the pool (objects as bytes, for checks from outside the module)."""
        return self._cli("rados", ("-p", self.pool) + args, check, input=input_bytes)

    def _cli(self, tool, args, check, **run):
        proc = subprocess.run([tool, "-c", self.conf, "-k", self.keyring, "--id", self.user] + list(args),
                              capture_output=True, timeout=120, check=False, **run)
        if check and proc.returncode != 0:
            stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
            raise AssertionError("%s %s failed: %s" % (tool, " ".join(args), stderr))
        return proc


class Cloud:
    """The test cloud: a Ceph cluster on stor1 (the machine is its admin
    client) and hv1, a hypervisor made by the collection's hypervisor role,
    holding the cluster's client.hypervisor key as a libvirt secret."""

    def __init__(self, state, ceph):
        self.state = state
        self.ceph = ceph
        self.hypervisor = Hypervisor(state, "hv1")


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    """One lab for every test that needs Ceph or libvirt (brought up once,
    by the storage and hypervisor roles); torn down at the end, also on failure."""
    name = lab_name("cloud")
    try:
        state, conf, keyring = ceph_lab.up(name, str(tmp_path_factory.mktemp("cloud")), hypervisor=True)
        made = Cloud(state, CephCluster(conf, keyring, storage=Lab(state)))
        try:
            yield made
        finally:
            made.hypervisor.cleanup()
    finally:
        lab.down(name, log=lambda _msg: None)


@pytest.fixture(scope="session")
def hypervisor(cloud):
    """The cloud's hypervisor host, for tests that boot TCG guests (see
    virt.py); guests defined through it are removed at the end."""
    return cloud.hypervisor


@pytest.fixture(scope="session")
def ceph(request):
    """A real Ceph cluster for module tests: the cloud's, with the machine as
    its admin client. HARDWAY_TEST_CEPH=<dir> (holding ceph.conf and
    ceph.client.admin.keyring) uses a cluster that already runs instead, and
    HARDWAY_TEST_CEPH_LAB=<lab> names the lab that runs it (for the tests that
    stop its OSD)."""
    existing = os.environ.get("HARDWAY_TEST_CEPH")
    if existing:
        storage = os.environ.get("HARDWAY_TEST_CEPH_LAB")
        return CephCluster(os.path.join(existing, "ceph.conf"), os.path.join(existing, "ceph.client.admin.keyring"),
                           storage=Lab(lab.load_state(storage)) if storage else None)
    return request.getfixturevalue("cloud").ceph
