"""The OSDs stopping while the Ceph modules work: with the monitors answering,
every module that reads or writes the pool fails after its timeout with a
message naming the OSDs of the pool (no hang, no traceback) and changes
nothing; once the OSD is back, a re-run does the work, the next changes
nothing, and the data already on the pool is unchanged."""

import hashlib
import uuid

from module_runner import run_module
from test_cloudinit_seed import seed_args

TIMEOUT = 5
MIB = 1 << 20


def sha256(ceph, name, tmp_path):
    path = tmp_path / ("%s.raw" % name)
    ceph.rbd("export", "--no-progress", "%s/%s" % (ceph.pool, name), str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.unlink()
    return digest


def test_the_osds_stopped_fail_each_module_naming_them_and_a_rerun_converges(ceph, tmp_path):
    token = uuid.uuid4().hex[:8]
    data, new, seed, lease = ("hw-osd-%s-%s" % (label, token) for label in ("data", "new", "seed", "lease"))
    connection = dict(ceph.connection(), timeout=TIMEOUT)
    seed_rbd = seed_args("", hostname="osd-fault")
    del seed_rbd["dest"]
    seed_rbd.update(connection, rbd={"pool": ceph.pool, "image": seed})
    runs = [
        # the image of a running VM, asserted as it is: reading it is enough to stall
        ("ceph_rbd_volume", dict(connection, pool=ceph.pool, name=data, size="4M")),
        # a new image, in a batch
        ("ceph_rbd_volume", dict(connection, volumes=[{"pool": ceph.pool, "name": new, "size": "4M"}])),
        ("cloudinit_seed", seed_rbd),
        ("ceph_lock", dict(connection, pool=ceph.pool, name=lease, holder="the fault test", duration=60)),
    ]
    random_bytes = tmp_path / "random.raw"
    random_bytes.write_bytes(uuid.uuid4().bytes * (4 * MIB // 16))
    ceph.rbd("import", "--no-progress", str(random_bytes), "%s/%s" % (ceph.pool, data))
    try:
        before = sha256(ceph, data, tmp_path)
        with ceph.osd_stopped():
            for module, args in runs:
                # run_module gives up long after the timeout: a hang fails the test
                result = run_module(module, args, timeout=120)
                where = "%s: %s" % (module, result)
                assert result.get("failed") and not result["changed"], where
                assert "the OSDs of pool %s did not answer within %d s (timeout)" % (ceph.pool, TIMEOUT) \
                    in result["msg"], where
                assert "exception" not in result and "Traceback" not in result["msg"], where
        # nothing was made while they were down
        listed = ceph.rbd("ls", ceph.pool).stdout.split()
        assert new not in listed and seed not in listed, listed
        assert ceph.rados("stat", lease, check=False).returncode != 0
        first = [run_module(module, args) for module, args in runs]
        assert [result.get("failed", False) for result in first] == [False] * 4, first
        assert [result["changed"] for result in first] == [False, True, True, True], first
        given_up = run_module("ceph_lock", dict(runs[3][1], owner=first[3]["owner"], state="unlocked"))
        assert given_up["changed"] and not given_up.get("failed"), given_up
        again = [run_module(module, args) for module, args in runs[:3]]
        assert not any(result.get("failed") or result["changed"] for result in again), again
        assert sha256(ceph, data, tmp_path) == before
    finally:
        for name in (data, new, seed):
            ceph.rbd("rm", "--no-progress", "%s/%s" % (ceph.pool, name), check=False)
        ceph.rados("rm", lease, check=False)
