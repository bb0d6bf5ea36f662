"""ceph_rbd_volume against a real Ceph cluster (the ``ceph`` fixture): create,
grow and shrink, import of qcow2 and raw files checked byte for byte, clones,
flatten, snapshots, the refusals that keep data safe (in use, clones,
snapshots, shrink), check mode (checked from outside with the rbd CLI), diff
mode, bad input and a cluster that does not answer. Every image a test makes
has a unique name and is removed afterwards, also when the test fails."""

import json
import os
import struct
import subprocess
import time
import uuid

import pytest

from module_runner import run_module
import badinput

MIB = 1 << 20


class Volumes:
    """Unique image names for one test, the module run against the cluster,
    and looks from outside (the rbd CLI). Removes what it named at the end."""

    def __init__(self, ceph, tmp_path):
        self.ceph = ceph
        self.pool = ceph.pool
        self.tmp_path = tmp_path
        self.token = uuid.uuid4().hex[:8]
        self.made = []
        self.namespaces = []

    def name(self, label):
        name = "hw-%s-%s" % (label, self.token)
        return name

    def spec(self, name, namespace=""):
        return "/".join(part for part in (self.pool, namespace, name) if part)

    def track(self, name, namespace=""):
        self.made.append(self.spec(name, namespace))
        self.made.append(self.spec(".%s.importing" % name, namespace))
        return name

    def new(self, label, namespace=""):
        return self.track(self.name(label), namespace)

    def namespace(self):
        namespace = "hw-ns-%s" % self.token
        self.ceph.rbd("namespace", "create", "%s/%s" % (self.pool, namespace))
        self.namespaces.append(namespace)
        return namespace

    def run(self, check=False, diff=True, **args):
        params = dict(self.ceph.connection(), pool=self.pool)
        params.update(args)
        return run_module("ceph_rbd_volume", params, check=check, diff=diff)

    def info(self, name, namespace=""):
        proc = self.ceph.rbd("info", "--format", "json", self.spec(name, namespace), check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def snaps(self, name, namespace=""):
        return json.loads(self.ceph.rbd("snap", "ls", "--format", "json", self.spec(name, namespace)).stdout)

    def names(self):
        return set(json.loads(self.ceph.rbd("ls", "--format", "json", self.pool).stdout))

    def export(self, name, namespace=""):
        path = str(self.tmp_path / ("export-%s" % uuid.uuid4().hex))
        self.ceph.rbd("export", self.spec(name, namespace), path)
        with open(path, "rb") as handle:
            data = handle.read()
        os.unlink(path)
        return data

    def cleanup(self):
        # clones were named after their parents: remove in reverse
        for spec in reversed(self.made):
            self._remove(spec)
        for namespace in self.namespaces:
            self.ceph.rbd("namespace", "remove", "%s/%s" % (self.pool, namespace), check=False)

    def _remove(self, spec):
        if self.ceph.rbd("info", spec, check=False).returncode != 0:
            return
        for snapshot in json.loads(self.ceph.rbd("snap", "ls", "--format", "json", spec).stdout):
            at = "%s@%s" % (spec, snapshot["name"])
            for child in json.loads(self.ceph.rbd("children", "--format", "json", at).stdout):
                self.ceph.rbd("flatten", "/".join(p for p in (child["pool"], child["pool_namespace"],
                                                              child["image"]) if p), check=False)
            if snapshot.get("protected") == "true":
                self.ceph.rbd("snap", "unprotect", at, check=False)
        self.ceph.rbd("snap", "purge", spec, check=False)
        # a holder that had to be killed leaves its watch for up to 30 s
        deadline = time.monotonic() + 60
        while self.ceph.rbd("rm", spec, check=False).returncode != 0 and time.monotonic() < deadline:
            time.sleep(2)


@pytest.fixture
def volumes(ceph, tmp_path):
    made = Volumes(ceph, tmp_path)
    yield made
    made.cleanup()


def write_raw(path, size, seed):
    """A file of ``size`` bytes that differ from offset to offset (and from seed to seed)."""
    block = bytes((seed * 7 + i * 13) % 251 for i in range(65536))
    with open(path, "wb") as handle:
        for offset in range(0, size, len(block)):
            handle.write(block[:size - offset])
    with open(path, "rb") as handle:
        return handle.read()


def qemu(*argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def image_facts(volumes, name, size, **extra):
    facts = {"pool": volumes.pool, "namespace": "", "name": name, "size": size,
             "parent": None, "snapshots": []}
    facts.update(extra)
    return facts


def owned(facts):
    """The facts as the diff shows them (without features, which depend on the cluster's defaults)."""
    return dict((key, value) for key, value in facts.items() if key not in ("features", "watchers"))


def test_create_is_idempotent_and_returns_facts(volumes):
    name = volumes.new("create")
    result = volumes.run(name=name, size="8M")
    assert result["changed"] and not result.get("failed"), result
    assert result["actions"] == ["create %s/%s (8 MiB)" % (volumes.pool, name)]
    assert owned(result["image"]) == image_facts(volumes, name, 8 * MIB)
    assert result["image"]["watchers"] == []
    info = volumes.info(name)
    assert info["size"] == 8 * MIB and sorted(info["features"]) == sorted(result["image"]["features"])
    assert result["diff"]["before"] == {} and result["diff"]["after"]["size"] == 8 * MIB
    again = volumes.run(name=name, size=8 * MIB)
    assert not again["changed"] and again["actions"] == [], again
    assert again["diff"]["before"] == again["diff"]["after"] == result["diff"]["after"]
    assert again["image"] == result["image"]


def test_grow_refused_shrink_and_allowed_shrink(volumes):
    name = volumes.new("resize")
    volumes.run(name=name, size="8M")
    grown = volumes.run(name=name, size="16M")
    assert grown["changed"] and volumes.info(name)["size"] == 16 * MIB
    assert grown["diff"]["before"]["size"] == 8 * MIB and grown["diff"]["after"]["size"] == 16 * MIB
    refused = volumes.run(name=name, size="12M")
    assert refused["failed"] and refused["parameter"] == "size" and not refused["changed"], refused
    assert "allow_shrink" in refused["msg"] and "12 MiB" in refused["msg"] and "16 MiB" in refused["msg"]
    assert volumes.info(name)["size"] == 16 * MIB
    shrunk = volumes.run(name=name, size="12M", allow_shrink=True)
    assert shrunk["changed"] and shrunk["image"]["size"] == 12 * MIB, shrunk
    assert shrunk["diff"]["before"]["size"] == 16 * MIB and shrunk["diff"]["after"]["size"] == 12 * MIB
    assert volumes.info(name)["size"] == 12 * MIB
    assert not volumes.run(name=name, size="12M", allow_shrink=True)["changed"]


def test_import_qcow2_reads_back_byte_for_byte(volumes, tmp_path):
    qcow2 = str(tmp_path / "disk.qcow2")
    qemu("qemu-img", "create", "-f", "qcow2", qcow2, "4M")
    qemu("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1M 64k", "-c", "write -P 0x5c 3M 4k", qcow2)
    expected = bytearray(4 * MIB)
    expected[MIB:MIB + 65536] = b"\xab" * 65536
    expected[3 * MIB:3 * MIB + 4096] = b"\x5c" * 4096
    name = volumes.new("qcow2")
    # a smaller size is raised to the file's virtual size
    result = volumes.run(name=name, source=qcow2, size="2M")
    assert result["changed"] and not result.get("failed"), result
    assert result["actions"] == ["import %s into %s/%s (4 MiB)" % (qcow2, volumes.pool, name)]
    assert owned(result["image"]) == image_facts(volumes, name, 4 * MIB)
    assert volumes.export(name) == bytes(expected)
    assert ".%s.importing" % name not in volumes.names()
    again = volumes.run(name=name, source=qcow2, size="2M")
    assert not again["changed"] and not again.get("warnings"), again
    # the source is only used at creation: the file may go
    os.unlink(qcow2)
    assert not volumes.run(name=name, source=qcow2)["changed"]


def test_a_failed_import_leaves_no_image(volumes, tmp_path):
    qcow2 = str(tmp_path / "corrupt.qcow2")
    qemu("qemu-img", "create", "-f", "qcow2", qcow2, "4M")
    qemu("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1M 64k", qcow2)
    # its header reads fine (qemu-img info), its one data cluster does not
    with open(qcow2, "r+b") as handle:
        header = handle.read(72)
        cluster_bits, l1_offset = struct.unpack(">I", header[20:24])[0], struct.unpack(">Q", header[40:48])[0]
        handle.seek(l1_offset)
        l2_offset = struct.unpack(">Q", handle.read(8))[0] & 0x00fffffffffffe00
        handle.seek(l2_offset)
        entries = struct.unpack(">%dQ" % (1 << (cluster_bits - 3)), handle.read(1 << cluster_bits))
        index = next(i for i, entry in enumerate(entries) if entry)
        handle.seek(l2_offset + 8 * index)
        handle.write(struct.pack(">Q", entries[index] + 512))
    name = volumes.new("badimport")
    result = volumes.run(name=name, source=qcow2)
    assert result["failed"] and not result["changed"] and result["actions"] == [], result
    assert "qemu-img could not import" in result["msg"] and "unaligned" in result["msg"], result
    assert result["image"] is None
    assert name not in volumes.names() and ".%s.importing" % name not in volumes.names()


def test_import_raw_into_a_larger_image_after_an_interrupted_import(volumes, tmp_path):
    raw = str(tmp_path / "disk.raw")
    data = write_raw(raw, 3 * MIB // 2, seed=1)
    name = volumes.new("raw")
    # what a killed import leaves: the temporary image, never the real name
    volumes.ceph.rbd("create", "--size", "1M", volumes.spec(".%s.importing" % name))
    result = volumes.run(name=name, source=raw, size="4M")
    assert result["changed"] and result["image"]["size"] == 4 * MIB, result
    exported = volumes.export(name)
    assert exported[:len(data)] == data and exported[len(data):] == bytes(4 * MIB - len(data))
    assert ".%s.importing" % name not in volumes.names()
    assert not volumes.run(name=name, source=raw, size="4M")["changed"]
    # growing later is a resize of the image, not a new import
    grown = volumes.run(name=name, source=raw, size="8M")
    assert grown["actions"] == ["resize %s/%s from 4 MiB to 8 MiB" % (volumes.pool, name)], grown
    assert volumes.export(name)[:len(data)] == data


def test_snapshot_protect_clone_and_flatten(volumes, tmp_path):
    raw = str(tmp_path / "template.raw")
    data = write_raw(raw, 2 * MIB, seed=2)
    template, clone = volumes.new("tmpl"), volumes.new("tmpl-clone")
    snaps = [{"name": "base", "protected": True}]
    made = volumes.run(name=template, source=raw, snapshots=snaps)
    assert made["actions"][1:] == ["create snapshot %s/%s@base" % (volumes.pool, template),
                                   "protect snapshot %s/%s@base" % (volumes.pool, template)], made
    assert made["image"]["snapshots"] == [{"name": "base", "size": 2 * MIB, "protected": True, "children": 0}]
    assert volumes.snaps(template)[0]["protected"] == "true"
    assert not volumes.run(name=template, source=raw, snapshots=snaps)["changed"]

    source = "%s/%s@base" % (volumes.pool, template)
    cloned = volumes.run(name=clone, source=source, size="4M")
    assert cloned["changed"] and cloned["image"]["parent"] == source, cloned
    assert cloned["actions"] == ["clone %s/%s from %s" % (volumes.pool, clone, source),
                                 "resize %s/%s from 2 MiB to 4 MiB" % (volumes.pool, clone)]
    assert cloned["diff"]["before"] == {} and cloned["diff"]["after"]["parent"] == source
    parent = volumes.info(clone)["parent"]
    assert (parent["image"], parent["snapshot"]) == (template, "base")
    assert volumes.export(clone)[:2 * MIB] == data
    assert not volumes.run(name=clone, source=source, size="4M")["changed"]
    assert volumes.run(name=template)["image"]["snapshots"][0]["children"] == 1

    flat = volumes.run(name=clone, source=source, size="4M", flatten=True)
    assert flat["changed"] and flat["image"]["parent"] is None, flat
    assert flat["diff"]["before"]["parent"] == source and flat["diff"]["after"]["parent"] is None
    assert "parent" not in volumes.info(clone)
    assert volumes.export(clone)[:2 * MIB] == data
    again = volumes.run(name=clone, source=source, size="4M", flatten=True)
    assert not again["changed"] and not again.get("warnings"), again
    assert volumes.run(name=template)["image"]["snapshots"][0]["children"] == 0


def test_a_different_source_is_warned_about_and_nothing_recreated(volumes):
    template, clone = volumes.new("src"), volumes.new("src-clone")
    volumes.run(name=template, size="4M", snapshots=[{"name": "a", "protected": True},
                                                     {"name": "b", "protected": True}])
    volumes.run(name=clone, source="%s/%s@a" % (volumes.pool, template))
    result = volumes.run(name=clone, source="%s/%s@b" % (volumes.pool, template))
    assert not result["changed"] and not result.get("failed"), result
    assert any("@a" in warning and "@b" in warning and "nothing was re-created" in warning
               for warning in map(str, result.get("warnings", []))), result
    assert volumes.info(clone)["parent"]["snapshot"] == "a"


def test_import_and_clone_in_a_namespace(volumes, tmp_path):
    raw = str(tmp_path / "template.raw")
    data = write_raw(raw, 4 * MIB, seed=6)
    namespace = volumes.namespace()
    template = volumes.new("ns-tmpl", namespace)
    clone, back = volumes.new("ns-clone", namespace), volumes.new("ns-back")
    made = volumes.run(name=template, namespace=namespace, source=raw, snapshots=[{"name": "base", "protected": True}])
    assert made["changed"] and made["image"]["namespace"] == namespace, made
    assert volumes.export(template, namespace) == data
    assert template not in volumes.names()
    source = "%s/%s/%s@base" % (volumes.pool, namespace, template)
    into_namespace = volumes.run(name=clone, namespace=namespace, source=source)
    assert into_namespace["image"]["parent"] == source, into_namespace
    assert into_namespace["actions"] == ["clone %s/%s/%s from %s" % (volumes.pool, namespace, clone, source)]
    assert volumes.info(clone, namespace)["parent"]["pool_namespace"] == namespace
    assert volumes.export(clone, namespace) == data
    out_of_it = volumes.run(name=back, source=source)
    if out_of_it.get("failed"):
        # clone format 1 (clients older than Mimic allowed) clones within a namespace only
        assert out_of_it["parameter"] == "source" and "clone format 2" in out_of_it["msg"], out_of_it
        assert volumes.info(back) is None and out_of_it["image"] is None
        children = 1
    else:
        assert out_of_it["image"]["parent"] == source, out_of_it
        assert volumes.info(back)["parent"]["pool_namespace"] == namespace
        children = 2
    assert volumes.run(name=template, namespace=namespace)["image"]["snapshots"][0]["children"] == children


def test_unprotected_snapshot_as_source(volumes):
    template, clone = volumes.new("unprot"), volumes.new("unprot-clone")
    volumes.run(name=template, size="4M", snapshots=[{"name": "base"}])
    result = volumes.run(name=clone, source="%s/%s@base" % (volumes.pool, template))
    if result.get("failed"):
        # clone format 1 (clients older than Mimic allowed): only protected snapshots
        assert result["parameter"] == "source" and "not protected" in result["msg"], result
        assert volumes.info(clone) is None
    else:
        assert result["image"]["parent"] == "%s/%s@base" % (volumes.pool, template), result


def test_refused_delete_while_watched(volumes):
    name = volumes.new("watched")
    volumes.run(name=name, size="4M")
    with volumes.ceph.hold(name):
        seen = volumes.run(name=name)
        assert len(seen["image"]["watchers"]) == 1, seen
        for force in (False, True):
            result = volumes.run(name=name, state="absent", force=force)
            assert result["failed"] and result["parameter"] == "state" and not result["changed"], result
            assert "in use" in result["msg"] and seen["image"]["watchers"][0] in result["msg"]
            assert volumes.info(name) is not None
        # growing an image in use is fine (the VM sees the new size)
        assert volumes.run(name=name, size="8M")["changed"]
        features = volumes.run(name=name, features=["layering"])
        assert features["failed"] and features["parameter"] == "features" and "in use" in features["msg"]
    removed = volumes.run(name=name, state="absent")
    assert removed["changed"] and volumes.info(name) is None, removed


def test_refused_delete_with_clones_and_with_snapshots(volumes):
    template, clone, lone = volumes.new("parent"), volumes.new("parent-clone"), volumes.new("snapped")
    volumes.run(name=template, size="4M", snapshots=[{"name": "base", "protected": True}])
    volumes.run(name=clone, source="%s/%s@base" % (volumes.pool, template))
    result = volumes.run(name=template, state="absent")
    assert result["failed"] and result["parameter"] == "state", result
    assert "has clones" in result["msg"] and "%s/%s" % (volumes.pool, clone) in result["msg"]
    assert result["image"]["snapshots"][0]["children"] == 1
    assert volumes.info(template) is not None
    for declared in ({"name": "base", "state": "absent"}, {"name": "base", "protected": False}):
        refused = volumes.run(name=template, snapshots=[declared])
        assert refused["failed"] and refused["parameter"].startswith("snapshots[0]"), refused
        assert "has clones" in refused["msg"] and volumes.snaps(template)[0]["protected"] == "true"

    volumes.run(name=lone, size="4M", snapshots=[{"name": "one"}, {"name": "two"}])
    result = volumes.run(name=lone, state="absent")
    assert result["failed"] and result["parameter"] == "state", result
    assert "has snapshots (one, two)" in result["msg"] and "force" in result["msg"]
    assert len(volumes.snaps(lone)) == 2


def test_forced_delete_flattens_clones_and_removes_snapshots(volumes, tmp_path):
    raw = str(tmp_path / "template.raw")
    data = write_raw(raw, MIB, seed=3)
    template, clone = volumes.new("forced"), volumes.new("forced-clone")
    volumes.run(name=template, source=raw, snapshots=[{"name": "base", "protected": True}, {"name": "plain"}])
    volumes.run(name=clone, source="%s/%s@base" % (volumes.pool, template))
    result = volumes.run(name=template, state="absent", force=True)
    assert result["changed"] and not result.get("failed"), result
    spec = "%s/%s" % (volumes.pool, template)
    assert result["actions"] == [
        "flatten %s/%s (clones of %s@base)" % (volumes.pool, clone, spec), "unprotect snapshot %s@base" % spec,
        "remove snapshot %s@base" % spec, "remove snapshot %s@plain" % spec, "remove %s" % spec]
    assert result["image"] is None and result["diff"]["after"] == {}
    assert [s["name"] for s in result["diff"]["before"]["snapshots"]] == ["base", "plain"]
    assert volumes.info(template) is None
    assert "parent" not in volumes.info(clone) and volumes.export(clone) == data
    assert not volumes.run(name=template, state="absent", force=True)["changed"]


def test_forced_snapshot_removal_flattens_its_clones(volumes):
    template, clone = volumes.new("snapforce"), volumes.new("snapforce-clone")
    volumes.run(name=template, size="4M", snapshots=[{"name": "base", "protected": True}])
    volumes.run(name=clone, source="%s/%s@base" % (volumes.pool, template))
    result = volumes.run(name=template, snapshots=[{"name": "base", "state": "absent"}], force=True)
    assert result["changed"] and result["image"]["snapshots"] == [], result
    assert volumes.snaps(template) == [] and "parent" not in volumes.info(clone)


def test_absent_on_a_missing_image_is_not_a_change(volumes):
    result = volumes.run(name=volumes.new("missing"), state="absent")
    assert not result["changed"] and not result.get("failed") and result["image"] is None, result
    assert result["actions"] == []


def test_features_change_online_and_at_creation(volumes):
    name = volumes.new("features")
    made = volumes.run(name=name, size="4M", features=["layering"])
    assert made["image"]["features"] == ["layering"] and volumes.info(name)["features"] == ["layering"], made
    wanted = ["layering", "exclusive-lock", "object-map", "fast-diff"]
    enabled = volumes.run(name=name, features=wanted)
    assert enabled["changed"] and enabled["image"]["features"] == wanted, enabled
    assert enabled["diff"]["before"]["features"] == ["layering"] and enabled["diff"]["after"]["features"] == wanted
    info = volumes.info(name)
    assert sorted(info["features"]) == sorted(wanted) and info["flags"] == [], "the object map was built"
    assert not volumes.run(name=name, features=list(reversed(wanted)))["changed"]
    fixed = volumes.run(name=name, features=wanted + ["deep-flatten"])
    assert fixed["failed"] and fixed["parameter"] == "features" and "deep-flatten" in fixed["msg"], fixed
    disabled = volumes.run(name=name, features=["layering"])
    assert disabled["changed"] and volumes.info(name)["features"] == ["layering"], disabled


def test_check_mode_changes_nothing_and_predicts_the_diff(volumes, tmp_path):
    """Each kind of change in check mode first: the rbd CLI sees nothing
    change, and the predicted diff is the one the real run then returns."""
    raw = str(tmp_path / "disk.raw")
    write_raw(raw, 2 * MIB, seed=4)
    name, clone = volumes.new("check"), volumes.new("check-clone")
    source = "%s/%s@base" % (volumes.pool, name)
    steps = [
        ("import", name, {"source": raw, "size": "3M"}),
        ("grow", name, {"size": "6M"}),
        ("shrink", name, {"size": "5M", "allow_shrink": True}),
        ("features", name, {"features": ["layering", "exclusive-lock"]}),
        ("snapshot", name, {"snapshots": [{"name": "base"}, {"name": "extra"}]}),
        ("protect", name, {"snapshots": [{"name": "base", "protected": True}]}),
        ("clone", clone, {"source": source, "size": "8M"}),
        ("flatten", clone, {"flatten": True}),
        ("unprotect and remove", name, {"snapshots": [{"name": "base", "protected": False},
                                                      {"name": "extra", "state": "absent"}]}),
        ("remove with snapshots", name, {"state": "absent", "force": True}),
        ("remove", clone, {"state": "absent", "force": True}),
    ]
    for label, image, args in steps:
        before = (volumes.names(), volumes.info(image), volumes.info(image) and volumes.snaps(image))
        checked = volumes.run(check=True, name=image, **args)
        assert checked["changed"] and not checked.get("failed"), (label, checked)
        assert (volumes.names(), volumes.info(image), volumes.info(image) and volumes.snaps(image)) == before, label
        applied = volumes.run(name=image, **args)
        assert applied["changed"] and not applied.get("failed"), (label, applied)
        assert applied["actions"] == checked["actions"], label
        assert applied["diff"] == checked["diff"], label
        assert applied["diff"]["before"] != applied["diff"]["after"], label
        again = volumes.run(check=True, name=image, **args)
        assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"], (label, again)
    assert volumes.info(name) is None and volumes.info(clone) is None


def test_missing_pool_namespace_and_parent(volumes):
    name = volumes.new("nopool")
    result = volumes.run(name=name, pool="hw-no-such-pool", size="4M")
    assert result["failed"] and result["parameter"] == "pool", result
    assert "hw-no-such-pool does not exist" in result["msg"]
    result = volumes.run(name=name, namespace="hw-no-such-ns", size="4M")
    assert result["failed"] and result["parameter"] == "namespace" and "does not exist" in result["msg"], result
    template = volumes.new("noparent")
    volumes.run(name=template, size="4M", snapshots=[{"name": "base", "protected": True}])
    for source, words in (("%s/%s@nosnap" % (volumes.pool, template), "has no snapshot nosnap"),
                          ("%s/hw-no-such-image@base" % volumes.pool, "does not exist"),
                          ("hw-no-such-pool/%s@base" % template, "pool hw-no-such-pool does not exist"),
                          ("%s/hw-no-ns/%s@base" % (volumes.pool, template), "namespace hw-no-ns does not exist")):
        result = volumes.run(name=name, source=source)
        assert result["failed"] and result["parameter"] == "source" and words in result["msg"], (source, result)
    assert name not in volumes.names()


@pytest.mark.parametrize("args,parameter", [
    ({"size": "10X"}, "size"),
    ({"size": "-1G"}, "size"),
    ({"size": "10GB"}, "size"),
    ({"size": 0}, "size"),
    ({}, "size"),
    ({"size": "4M", "name": "a/b"}, "name"),
    ({"size": "4M", "name": "a b"}, "name"),
    ({"size": "4M", "name": "a@b"}, "name"),
    ({"size": "4M", "name": "a\x01b"}, "name"),
    ({"size": "4M", "pool": "vms/x"}, "pool"),
    ({"size": "4M", "namespace": "a b"}, "namespace"),
    ({"source": "debian12"}, "source"),
    ({"source": "vms/debian12"}, "source"),
    ({"source": "images/debian.qcow2"}, "source"),
    ({"source": "/nonexistent/debian.qcow2"}, "source"),
    ({"size": "4M", "snapshots": [{"name": "a/b"}]}, "snapshots[0].name"),
    ({"size": "4M", "snapshots": [{"name": "a"}, {"name": "a"}]}, "snapshots[1].name"),
    ({"size": "4M", "snapshots": [{"name": "a", "state": "gone"}]}, "snapshots[0].state"),
    ({"size": "4M", "snapshots": "base"}, "snapshots"),
    ({"size": "4M", "features": ["bogus"]}, "features[0]"),
    ({"size": "4M", "features": ["fast-diff"]}, "features"),
    ({"size": "4M", "state": "gone"}, "state"),
    ({"size": "4M", "timeout": 0}, "timeout"),
    ({"size": "4M", "conf": "/nonexistent/ceph.conf"}, "conf"),
    ({"size": "4M", "keyring": "/nonexistent/keyring"}, "keyring"),
    ({"size": "4M", "user": "client admin"}, "user"),
    ({"size": "4M", "bogus": 1}, "bogus"),
])
def test_bad_input_names_the_parameter(volumes, args, parameter):
    name = volumes.new("bad")
    params = {"name": name}
    params.update(args)
    result = volumes.run(**params)
    assert result["failed"] and not result.get("changed"), result
    assert result["parameter"] == parameter, result
    assert parameter.split(".")[-1].split("[")[0] in result["msg"], result
    assert name not in volumes.names()


def test_a_file_that_is_not_qcow2_or_raw(volumes, tmp_path):
    vmdk = str(tmp_path / "disk.vmdk")
    qemu("qemu-img", "create", "-f", "vmdk", vmdk, "4M")
    name = volumes.new("vmdk")
    result = volumes.run(name=name, source=vmdk)
    assert result["failed"] and result["parameter"] == "source" and "vmdk" in result["msg"], result
    assert name not in volumes.names()


def test_unreachable_cluster_fails_within_the_timeout(volumes, tmp_path):
    conf = tmp_path / "unreachable.conf"
    # nothing listens on port 1 of the loopback address
    conf.write_text("[global]\nmon host = [::1]:1\nms bind ipv6 = true\n")
    started = time.monotonic()
    result = volumes.run(name=volumes.new("unreachable"), size="4M", conf=str(conf), timeout=3)
    elapsed = time.monotonic() - started
    assert result["failed"] and not result["changed"], result
    assert "did not answer within 3 s" in result["msg"] and str(conf) in result["msg"], result
    assert elapsed < 30, elapsed


def test_key_material_stays_out_of_the_result(volumes, ceph, tmp_path):
    with open(ceph.keyring) as handle:
        keys = [line.split("=", 1)[1].strip() for line in handle if line.strip().startswith("key")]
    assert keys
    raw = str(tmp_path / "disk.raw")
    write_raw(raw, MIB, seed=5)
    name = volumes.new("secret")
    results = [volumes.run(name=name, source=raw, check=True), volumes.run(name=name, source=raw),
               volumes.run(name=name, state="absent", user="hw-nobody")]
    assert results[-1]["failed"] and "client.hw-nobody" in results[-1]["msg"], results[-1]
    text = json.dumps(results)
    assert not any(key in text for key in keys)


# batches: volumes

def children_of(volumes, name, snapshot, namespace=""):
    at = "%s@%s" % (volumes.spec(name, namespace), snapshot)
    return sorted(child["image"] for child in json.loads(volumes.ceph.rbd("children", "--format", "json", at).stdout))


def test_batch_of_clones_check_mode_diff_idempotence_and_delete(volumes):
    template = volumes.new("bt")
    volumes.run(name=template, size="4M", snapshots=[{"name": "base", "protected": True}])
    source = "%s/%s@base" % (volumes.pool, template)
    # not sorted: results come back in the order given
    order = (7, 3, 19, 0, 12, 5, 16, 1, 9, 14, 2, 18, 6, 11, 4, 17, 8, 13, 10, 15)
    clones = [volumes.new("bt%02d" % index) for index in order]
    specs = [volumes.spec(name) for name in clones]
    batch = [{"name": name} for name in clones]
    before = volumes.names()

    checked = volumes.run(check=True, volumes=batch, source=source)
    assert checked["changed"] and not checked.get("failed"), checked
    assert volumes.names() == before, "check mode changes nothing"
    assert [entry["spec"] for entry in checked["volumes"]] == specs
    assert all(entry["changed"] and entry["actions"] == ["clone %s from %s" % (spec, source)]
               for spec, entry in zip(specs, checked["volumes"])), checked["volumes"]
    assert checked["diff"]["before"] == {} and sorted(checked["diff"]["after"]) == sorted(specs)
    assert checked["diff"]["after"][specs[0]]["parent"] == source
    assert "image" not in checked and "actions" not in checked

    started = time.monotonic()
    made = volumes.run(volumes=batch, source=source)
    elapsed = time.monotonic() - started
    assert made["changed"] and not made.get("failed"), made
    assert [entry["spec"] for entry in made["volumes"]] == specs
    assert [entry["actions"] for entry in made["volumes"]] == [entry["actions"] for entry in checked["volumes"]]
    assert made["diff"] == checked["diff"], "check mode predicted the diff"
    assert all(entry["image"]["parent"] == source and entry["image"]["size"] == 4 * MIB for entry in made["volumes"])
    assert children_of(volumes, template, "base") == sorted(clones)
    assert elapsed < 20, elapsed

    again = volumes.run(volumes=batch, source=source)
    assert not again["changed"] and not again.get("failed"), again
    assert all(not entry["changed"] and entry["actions"] == [] for entry in again["volumes"])
    assert [entry["image"] for entry in again["volumes"]] == [entry["image"] for entry in made["volumes"]]
    assert again["diff"] == {"before": {}, "after": {}}

    removing = dict(volumes=batch, state="absent")
    checked = volumes.run(check=True, **removing)
    assert checked["changed"] and volumes.names() >= set(clones), checked
    assert checked["diff"]["after"] == {} and sorted(checked["diff"]["before"]) == sorted(specs)
    removed = volumes.run(**removing)
    assert removed["changed"] and not removed.get("failed"), removed
    assert [entry["actions"] for entry in removed["volumes"]] == [["remove %s" % spec] for spec in specs]
    assert all(entry["image"] is None for entry in removed["volumes"])
    assert removed["diff"] == checked["diff"]
    assert not volumes.names() & set(clones) and children_of(volumes, template, "base") == []
    assert not volumes.run(**removing)["changed"]


def test_batch_makes_a_parent_before_its_clones_and_removes_them_in_any_order(volumes):
    namespace = volumes.namespace()
    template = volumes.new("bp", namespace)
    clones = [volumes.new("bp-c%d" % index, namespace) for index in range(3)]
    plain = volumes.new("bp-plain")
    source = "%s/%s/%s@base" % (volumes.pool, namespace, template)
    batch = [{"name": template, "size": "4M", "snapshots": [{"name": "base", "protected": True}]}] + \
        [{"name": name, "source": source} for name in clones] + [{"name": plain, "namespace": "", "size": "4M"}]

    checked = volumes.run(check=True, namespace=namespace, volumes=batch)
    assert checked["changed"] and not checked.get("failed"), checked
    assert volumes.info(template, namespace) is None and volumes.info(plain) is None
    made = volumes.run(namespace=namespace, volumes=batch)
    assert made["changed"] and not made.get("failed"), made
    assert made["volumes"][0]["actions"] == [
        "create %s/%s/%s (4 MiB)" % (volumes.pool, namespace, template),
        "create snapshot %s@base" % source.split("@")[0], "protect snapshot %s@base" % source.split("@")[0]]
    assert [entry["image"]["parent"] for entry in made["volumes"][1:4]] == [source] * 3
    assert made["volumes"][4]["spec"] == volumes.spec(plain) and volumes.info(plain)["size"] == 4 * MIB
    assert made["diff"] == checked["diff"] and made["volumes"] == checked["volumes"]
    assert children_of(volumes, template, "base", namespace) == sorted(clones)
    assert not volumes.run(namespace=namespace, volumes=batch)["changed"]

    # clones listed before their parent: refused before anything is made
    other = volumes.new("bp-other")
    wrong = [{"name": other, "source": "%s/%s@base" % (volumes.pool, volumes.name("bp-late"))},
             {"name": volumes.new("bp-late"), "size": "4M", "snapshots": [{"name": "base"}]}]
    refused = volumes.run(volumes=wrong)
    assert refused["failed"] and refused["parameter"] == "volumes[0].source" and not refused["changed"], refused
    assert "volumes[1] makes it later in this batch" in refused["msg"] and refused["failed_entry"] == 0
    assert volumes.info(other) is None and volumes.info(volumes.name("bp-late")) is None

    # the clones, then their parent: the parent has no clones left to flatten by then
    teardown = [{"name": name} for name in clones] + [{"name": template, "force": True}]
    removed = volumes.run(namespace=namespace, state="absent", volumes=teardown)
    assert removed["changed"] and not removed.get("failed"), removed
    assert removed["volumes"][3]["actions"] == [
        "unprotect snapshot %s" % source, "remove snapshot %s" % source,
        "remove %s/%s/%s" % (volumes.pool, namespace, template)]
    assert all(volumes.info(name, namespace) is None for name in clones + [template])


def test_batch_with_a_bad_entry_in_the_middle_changes_nothing(volumes):
    first, second, third = volumes.new("bb1"), volumes.new("bb2"), volumes.new("bb3")
    before = volumes.names()
    for bad, parameter, words in (
            ({"name": second, "size": "10X"}, "volumes[1].size", "'10X' is not a size"),
            ({"name": second, "state": "gone"}, "volumes[1].state", "must be one of"),
            ({"name": second, "flatten": "maybe"}, "volumes[1].flatten", "bool"),
            ({"name": second, "bogus": 1}, "volumes[1].bogus", "bogus"),
            ({"name": second, "snapshots": [{"name": "a"}, {"name": "b", "state": "gone"}]},
             "volumes[1].snapshots[1].state", "must be one of"),
            ({"name": second, "snapshots": [{"name": "a/b"}]}, "volumes[1].snapshots[0].name", "not a Ceph"),
            ({"name": second, "features": ["fast-diff"]}, "volumes[1].features", "needs object-map"),
            ({"name": second, "source": "%s/hw-no-such-image@base" % volumes.pool}, "volumes[1].source",
             "does not exist"),
            ({"name": "a b"}, "volumes[1].name", "not a Ceph"),
            ({"size": "4M"}, "volumes[1].name", "missing required arguments"),
            ("just-a-name", "volumes[1]", "must be a dict"),
            ({"name": second, "pool": "hw-no-such-pool"}, "volumes[1].pool", "hw-no-such-pool does not exist"),
            ({"name": second, "namespace": "hw-no-such-ns"}, "volumes[1].namespace", "does not exist"),
            ({"name": first}, "volumes", "twice (volumes[0] and volumes[1])")):
        result = volumes.run(size="4M", volumes=[{"name": first}, bad, {"name": third}])
        assert result["failed"] and not result.get("changed"), (bad, result)
        assert result["parameter"] == parameter and result["msg"].startswith(parameter + ": "), (bad, result)
        assert words in result["msg"], (bad, result)
        if parameter != "volumes":
            assert result["failed_entry"] == 1, (bad, result)
        assert volumes.names() == before, bad
    result = volumes.run(pool=None, volumes=[{"name": first, "pool": volumes.pool, "size": "4M"}, {"name": second}])
    assert result["failed"] and result["parameter"] == "volumes[1].pool" and "top level" in result["msg"], result
    assert volumes.names() == before


def test_batch_refuses_an_image_in_use_before_removing_any(volumes):
    names = [volumes.new("bu%d" % index) for index in range(3)]
    volumes.run(size="4M", volumes=[{"name": name} for name in names])
    with volumes.ceph.hold(names[1]):
        result = volumes.run(state="absent", volumes=[{"name": name} for name in names])
        assert result["failed"] and result["parameter"] == "volumes[1].state" and not result["changed"], result
        assert "in use" in result["msg"] and volumes.spec(names[1]) in result["msg"], result
        assert result["failed_entry"] == 1 and result["volumes"] == []
        assert all(volumes.info(name) is not None for name in names)


def test_batch_stops_at_the_first_entry_that_fails_to_apply(volumes):
    made, removed, grouped, kept, later = (volumes.new("ba-new"), volumes.new("ba-rm"), volumes.new("ba-grp"),
                                           volumes.new("ba-keep"), volumes.new("ba-later"))
    volumes.run(size="4M", volumes=[{"name": removed}, {"name": grouped}, {"name": kept}])
    # librbd removes no image of a group: a refusal only applying finds
    group = "%s/hw-grp-%s" % (volumes.pool, volumes.token)
    volumes.ceph.rbd("group", "create", group)
    try:
        volumes.ceph.rbd("group", "image", "add", group, volumes.spec(grouped))
        result = volumes.run(volumes=[{"name": made, "size": "4M"}, {"name": removed, "state": "absent"},
                                      {"name": grouped, "state": "absent"}, {"name": kept, "state": "absent"},
                                      {"name": later, "size": "4M"}])
        assert result["failed"] and result["changed"] and result["failed_entry"] == 2, result
        assert result["msg"].startswith("volumes[2] (%s): " % volumes.spec(grouped)), result
        assert "group" in result["msg"] and "Traceback" not in result["msg"], result
        done = result["volumes"]
        assert [entry["spec"] for entry in done] == [volumes.spec(name) for name in (made, removed, grouped)]
        assert done[0]["changed"] and done[0]["actions"] == ["create %s (4 MiB)" % volumes.spec(made)]
        assert done[0]["image"]["size"] == 4 * MIB
        assert done[1]["changed"] and done[1]["image"] is None
        assert done[2]["failed"] and not done[2]["changed"] and done[2]["actions"] == [], done[2]
        assert done[2]["image"]["name"] == grouped and "group" in done[2]["msg"]
        # the diff shows what changed: the image made and the one removed
        assert list(result["diff"]["before"]) == [volumes.spec(removed)]
        assert list(result["diff"]["after"]) == [volumes.spec(made)]
        assert result["diff"]["after"][volumes.spec(made)]["size"] == 4 * MIB
        # before it done, it and after it untouched
        assert volumes.info(made) is not None and volumes.info(removed) is None
        assert volumes.info(grouped) is not None and volumes.info(kept) is not None and volumes.info(later) is None
    finally:
        volumes.ceph.rbd("group", "image", "remove", group, volumes.spec(grouped), check=False)
        volumes.ceph.rbd("group", "remove", group, check=False)


def test_a_generated_corpus_of_bad_input_is_refused_naming_the_parameter(volumes):
    name = volumes.new("corpus")
    valid = dict(volumes.ceph.connection(), pool=volumes.pool, name=name, size="4M", snapshots=[{"name": "s1"}])
    ceph_names = ["-a", "a:b", "a=b", "a/b", "a@b"]
    cases = badinput.corpus(badinput.argument_spec("ceph_rbd_volume"), valid,
                            names=("name", "pool", "user", "snapshots[].name"), needed=("size",),
                            # no namespace is the default namespace
                            bad={"namespace": [value for value in badinput.METACHARACTERS if value] + ceph_names,
                                 "name": ceph_names, "pool": ceph_names, "snapshots[].name": ceph_names,
                                 "size": ["-1", "10X", "1.5.5G", "4MB", "0", "", [4]], "timeout": [0, -1],
                                 "source": ["%s/base" % volumes.pool, "%s/base@" % volumes.pool, "a/b/c/d@s",
                                            "relative.qcow2", "/no/such/file.qcow2"],
                                 "features[]": ["no-such-feature", "striping"], "cluster": ["", "a b"]})
    assert len(cases) >= 100
    found = badinput.problems(cases, lambda args: run_module("ceph_rbd_volume", args), volumes.names)
    assert not found, "\n".join(found)
    assert name not in volumes.names()
