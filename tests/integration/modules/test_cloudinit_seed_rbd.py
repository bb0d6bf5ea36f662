"""cloudinit_seed writing the seed into an RBD image of a real Ceph cluster
(the ``ceph`` fixture): the same bytes as a seed file, idempotence, rewrites of
another size, check and diff mode, removal (refused while a client has the
image open, as a running VM does), and bad input naming the parameter."""

import hashlib
import io
import json
import uuid

import pytest

from module_runner import run_module
from test_cloudinit_seed import SECRET, seed_args

pycdlib = pytest.importorskip("pycdlib")


class Seeds:
    """Unique image names; each is removed at the end, also when a test fails."""

    def __init__(self, ceph):
        self.ceph = ceph
        self.made = []

    def new(self):
        name = "hw-seed-%s" % uuid.uuid4().hex[:8]
        self.made.append(name)
        return name

    def args(self, name, **extra):
        args = seed_args("", **extra)
        del args["dest"]
        args.update(self.ceph.connection(), rbd={"pool": self.ceph.pool, "image": name})
        return args

    def read(self, name, path):
        proc = self.ceph.rbd("export", "--no-progress", "%s/%s" % (self.ceph.pool, name), str(path), check=False)
        if proc.returncode != 0:
            return None
        return path.read_bytes()

    def cleanup(self):
        for name in self.made:
            self.ceph.rbd("rm", "--no-progress", "%s/%s" % (self.ceph.pool, name), check=False)


@pytest.fixture
def seeds(ceph):
    made = Seeds(ceph)
    yield made
    made.cleanup()


def files_of(data):
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        found = {}
        for name in ("meta-data", "user-data", "network-config"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path="/" + name)
            found[name] = out.getvalue().decode()
        return iso.pvd.volume_identifier.decode().strip(), found
    finally:
        iso.close()


def test_the_seed_in_rbd_is_the_seed_file_byte_for_byte(seeds, tmp_path):
    name = seeds.new()
    made = run_module("cloudinit_seed", seeds.args(name))
    assert made["changed"] and made["image"] == "%s/%s" % (seeds.ceph.pool, name), made
    as_file = run_module("cloudinit_seed", seed_args(tmp_path / "seed.iso"))
    data = seeds.read(name, tmp_path / "export")
    assert data == (tmp_path / "seed.iso").read_bytes()
    assert made["sha256"] == as_file["sha256"] == hashlib.sha256(data).hexdigest()
    assert made["size"] == len(data) and made["files"] == ["meta-data", "network-config", "user-data"]
    label, found = files_of(data)
    assert label == "cidata" and "local-hostname: web1" in found["meta-data"]
    assert found["user-data"].startswith("#cloud-config")
    again = run_module("cloudinit_seed", seeds.args(name))
    assert not again["changed"] and again["sha256"] == made["sha256"], again


def test_check_mode_writes_nothing_and_diff_hides_secrets(seeds, tmp_path):
    name = seeds.new()
    checked = run_module("cloudinit_seed", seeds.args(name), check=True)
    assert checked["changed"] and seeds.read(name, tmp_path / "none") is None, checked
    assert "keys: chpasswd, password, ssh_authorized_keys, write_files" in checked["diff"]["after"]
    assert SECRET not in str(checked)
    made = run_module("cloudinit_seed", seeds.args(name))
    changed = run_module("cloudinit_seed", seeds.args(name, hostname="web2"), check=True)
    assert changed["changed"] and "local-hostname: web2" in changed["diff"]["after"]
    assert "local-hostname: web1" in changed["diff"]["before"]
    assert hashlib.sha256(seeds.read(name, tmp_path / "after-check")).hexdigest() == made["sha256"]


def test_a_change_of_content_and_size_rewrites_the_image(seeds, tmp_path):
    name = seeds.new()
    small = run_module("cloudinit_seed", seeds.args(name))
    big_data = {"write_files": [{"path": "/srv/blob", "content": "x" * 300000}]}
    big = run_module("cloudinit_seed", seeds.args(name, user_data=big_data))
    assert big["changed"] and big["size"] > small["size"], big
    assert hashlib.sha256(seeds.read(name, tmp_path / "big")).hexdigest() == big["sha256"]
    back = run_module("cloudinit_seed", seeds.args(name))
    assert back["changed"] and back["sha256"] == small["sha256"] and back["size"] == small["size"]
    data = seeds.read(name, tmp_path / "small")
    assert len(data) == small["size"] and hashlib.sha256(data).hexdigest() == small["sha256"]


def test_absent_refused_while_in_use_then_removed(seeds, tmp_path):
    name = seeds.new()
    run_module("cloudinit_seed", seeds.args(name))
    with seeds.ceph.hold(name):
        refused = run_module("cloudinit_seed", seeds.args(name, state="absent"))
        assert refused["failed"] and "in use" in refused["msg"] and not refused["changed"], refused
        assert seeds.read(name, tmp_path / "still") is not None
    checked = run_module("cloudinit_seed", seeds.args(name, state="absent"), check=True)
    assert checked["changed"] and seeds.read(name, tmp_path / "checked") is not None
    removed = run_module("cloudinit_seed", seeds.args(name, state="absent"))
    assert removed["changed"] and seeds.read(name, tmp_path / "gone") is None, removed
    assert not run_module("cloudinit_seed", seeds.args(name, state="absent"))["changed"]


@pytest.mark.parametrize("change, parameter", [
    ({"rbd": {"pool": "no-such-pool", "image": "x"}}, "rbd.pool"),
    ({"rbd": {"pool": "vms", "image": "a/b"}}, "rbd.image"),
    ({"rbd": {"pool": "vms", "image": "x", "namespace": "nope"}}, "rbd.namespace"),
    ({"rbd": {"image": "x"}}, "rbd.pool"),
    ({"mode": "0644"}, "mode"),
    ({"dest": "/tmp/both.iso"}, "dest"),
    ({"keyring": "/nonexistent/keyring"}, "keyring"),
])
def test_bad_input_names_the_parameter(seeds, change, parameter):
    name = seeds.new()
    args = seeds.args(name)
    args.update(change)
    result = run_module("cloudinit_seed", args)
    assert result["failed"] and not result.get("changed"), result
    assert parameter in (result.get("parameter") or "") or parameter in result["msg"], result
    assert seeds.ceph.rbd("info", "%s/%s" % (seeds.ceph.pool, name), check=False).returncode != 0


def test_a_batch_writes_each_seed_with_one_connection(seeds, tmp_path):
    names = [seeds.new(), seeds.new(), seeds.new()]
    args = seeds.args(names[0])
    del args["rbd"]
    args["seeds"] = [{"rbd": {"pool": seeds.ceph.pool, "image": name}, "instance_id": name, "hostname": "vm%d" % index}
                     for index, name in enumerate(names)]
    made = run_module("cloudinit_seed", args)
    assert made["changed"] and [seed["image"] for seed in made["seeds"]] == \
        ["%s/%s" % (seeds.ceph.pool, name) for name in names], made
    for index, (name, seed) in enumerate(zip(names, made["seeds"])):
        data = seeds.read(name, tmp_path / name)
        assert hashlib.sha256(data).hexdigest() == seed["sha256"]
        assert 'local-hostname: vm%d' % index in files_of(data)[1]["meta-data"]
    assert SECRET not in json.dumps(made)
    assert not run_module("cloudinit_seed", args)["changed"]
    # an entry in a pool that does not exist: named, and nothing written
    args["seeds"][1]["hostname"] = "renamed"
    args["seeds"][2]["rbd"]["pool"] = "no-such-pool"
    refused = run_module("cloudinit_seed", args)
    assert refused.get("failed") and refused["parameter"] == "seeds[2].rbd.pool" and refused["failed_entry"] == 2
    assert "local-hostname: vm1" in files_of(seeds.read(names[1], tmp_path / "again"))[1]["meta-data"]
    removed = run_module("cloudinit_seed", dict(args, state="absent", seeds=[
        {"rbd": {"pool": seeds.ceph.pool, "image": name}} for name in names]))
    assert removed["changed"] and [seed["sha256"] for seed in removed["seeds"]] == [None] * 3
    assert seeds.read(names[0], tmp_path / "gone") is None
