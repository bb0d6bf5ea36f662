"""Pure logic of ceph_rbd_volume: sizes, names, sources, features, and the
plan from an image's facts to the wanted state (with the facts afterwards)."""

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import base, rbd, units
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

MIB, GIB = 1 << 20, 1 << 30
DEFAULT = ["layering", "exclusive-lock", "object-map", "fast-diff", "deep-flatten"]


def want(**extra):
    params = {"pool": "vms", "namespace": "", "name": "disk", "state": "present", "size": None, "source": None,
              "snapshots": [], "flatten": False, "allow_shrink": False, "force": False, "features": None}
    params.update(extra)
    return rbd.wanted(params)


def facts(**extra):
    base = {"pool": "vms", "namespace": "", "name": "disk", "size": 64 * MIB, "features": list(DEFAULT),
            "parent": None, "snapshots": [], "watchers": []}
    base.update(extra)
    return base


def snap(name, protected=False, children=0, size=64 * MIB):
    return {"name": name, "size": size, "protected": protected, "children": children}


def child(image, pool="vms", namespace=""):
    return {"pool": pool, "pool_namespace": namespace, "image": image, "id": "id-" + image, "trash": False}


def verbs(actions):
    return [action[0] for action in actions]


def refused(parameter, *args, **kwargs):
    with pytest.raises(ParameterError) as info:
        rbd.plan(*args, **kwargs)
    assert info.value.parameter == parameter, str(info.value)
    return str(info.value)


@pytest.mark.parametrize("value,size", [
    ("10G", 10 * GIB), ("512M", 512 * MIB), ("1.5T", 3 << 39), ("4k", 4096), ("10GiB", 10 * GIB),
    ("2Mi", 2 * MIB), ("1048576", MIB), (1048576, MIB), ("100B", 100), (" 1 G ", GIB), (".5G", GIB // 2),
    (2.0, 2), ("1P", 1 << 50),
])
def test_sizes_are_binary(value, size):
    assert units.parse_size("size", value) == size


@pytest.mark.parametrize("value,words", [
    ("-1G", "negative"), (-5, "negative"), ("0", "more than 0"), (0, "more than 0"), ("10GB", "powers of 1000"),
    ("ten", "not a size"), ("1.5", "whole number"), ("0.3K", "whole number"), ("1X", "not a size"), (True, "not a size"),
    ("", "not a size"), ([1], "not a size"), (float("inf"), "not a size"), ("1e9", "not a size"),
])
def test_bad_sizes_name_the_parameter(value, words):
    with pytest.raises(ParameterError) as info:
        units.parse_size("size", value)
    assert info.value.parameter == "size"
    assert words in str(info.value) and str(info.value).startswith("size: ")


def test_format_size():
    assert units.format_size(10 * GIB) == "10 GiB"
    assert units.format_size(3 << 39) == "1.5 TiB"
    assert units.format_size(1000) == "1000 bytes"
    assert units.format_size(MIB + 1) == "1048577 bytes"
    assert units.format_size(GIB + GIB // 4) == "1.25 GiB"


@pytest.mark.parametrize("name", ["a/b", "a@b", "a b", "a\tb", "a\nb", "a\n", "a\x00b", "a\x7fb", "a:b", "a=b", "a;b",
                                  "-a", "", None])
def test_bad_names(name):
    with pytest.raises(ParameterError) as info:
        rbd.check_name("name", name, "image")
    assert info.value.parameter == "name"


def test_wanted_names_each_bad_parameter():
    for key, value in (("pool", "v/ms"), ("namespace", "a b"), ("name", "x@y")):
        with pytest.raises(ParameterError) as info:
            want(**{key: value})
        assert info.value.parameter == key
    assert want(namespace="acme")["spec"] == "vms/acme/disk"
    assert want(namespace=None)["namespace"] == ""


def test_sources():
    assert rbd.parse_source("vms/debian12@base") == {
        "kind": "clone", "pool": "vms", "namespace": "", "image": "debian12", "snapshot": "base",
        "spec": "vms/debian12@base"}
    nested = rbd.parse_source("vms/templates/debian12@base")
    assert nested["namespace"] == "templates" and nested["spec"] == "vms/templates/debian12@base"
    assert rbd.parse_source("/srv/images/debian.qcow2") == {"kind": "file", "path": "/srv/images/debian.qcow2"}
    assert rbd.parse_source("/srv/a@b.qcow2")["kind"] == "file"


@pytest.mark.parametrize("value", ["debian12", "vms/debian12", "vms/debian12@", "/vms@x", "a/b/c/d@s", "vms//x@s",
                                   "vms/a b@s", "images/debian.qcow2", "@snap", "vms/x@s@t", "", "/tmp/a\nb"])
def test_bad_sources_name_source(value):
    if value == "/vms@x":
        assert rbd.parse_source(value)["kind"] == "file"
        return
    with pytest.raises(ParameterError) as info:
        rbd.parse_source(value)
    assert info.value.parameter == "source"


def test_features():
    assert rbd.feature_names(61) == DEFAULT
    assert rbd.feature_names(61 | 256) == DEFAULT, "librbd's own operations bit is not shown"
    assert rbd.feature_bits(DEFAULT) == 61
    assert rbd.features_from_conf("61") == DEFAULT
    assert rbd.features_from_conf("layering,exclusive-lock") == ["layering", "exclusive-lock"]
    assert rbd.check_features(["fast-diff", "object-map", "exclusive-lock", "layering"]) == \
        ["layering", "exclusive-lock", "object-map", "fast-diff"]
    assert rbd.check_features(None) is None
    for value, parameter in ((["layering", "striping"], "features[1]"), (["bogus"], "features[0]"),
                             (["object-map"], "features"), (["exclusive-lock", "fast-diff"], "features"),
                             (["journaling"], "features")):
        with pytest.raises(ParameterError) as info:
            rbd.check_features(value)
        assert info.value.parameter == parameter
    with pytest.raises(ParameterError) as info:
        want(source="vms/t@s", features=["exclusive-lock"])
    assert "layering" in str(info.value)


def test_snapshot_declarations():
    with pytest.raises(ParameterError) as info:
        want(snapshots=[{"name": "a"}, {"name": "a", "state": "absent"}])
    assert info.value.parameter == "snapshots[1].name"
    with pytest.raises(ParameterError) as info:
        want(snapshots=[{"name": "a@b"}])
    assert info.value.parameter == "snapshots[0].name"
    with pytest.raises(ParameterError) as info:
        want(snapshots=["a"])
    assert info.value.parameter == "snapshots[0]"
    assert want(snapshots=[{"name": "a"}])["snapshots"] == [
        {"name": "a", "protected": None, "state": "present", "where": "snapshots[0]"}]


def test_create_needs_a_size_or_a_source():
    assert "required" in refused("size", want(), None, source_features=DEFAULT)
    actions, after, warnings = rbd.plan(want(size="64M"), None, source_features=DEFAULT)
    assert actions == [("create", 64 * MIB, None)] and not warnings
    assert after == facts()


def test_create_with_features_and_snapshots():
    declared = [{"name": "base", "protected": True}, {"name": "gone", "state": "absent"}]
    wanted = want(size="1G", features=["layering"], snapshots=declared)
    actions, after, _warnings = rbd.plan(wanted, None, source_features=DEFAULT)
    assert actions == [("create", GIB, ["layering"]), ("snapshot", "base"), ("protect", "base")]
    assert after["features"] == ["layering"]
    assert after["snapshots"] == [snap("base", protected=True, size=GIB)]


def test_clone_takes_the_parents_size_and_grows_to_size():
    source = "vms/debian12@base"
    actions, after, _warnings = rbd.plan(want(source=source), None, source_size=2 * GIB, source_features=["layering"])
    assert verbs(actions) == ["clone"] and after["size"] == 2 * GIB
    assert after["parent"] == source and after["features"] == ["layering"]
    actions, after, _warnings = rbd.plan(want(source=source, size="10G"), None, source_size=2 * GIB,
                                         source_features=DEFAULT)
    assert actions[1] == ("resize", 2 * GIB, 10 * GIB) and after["size"] == 10 * GIB
    # a size below the parent's is raised to it, not a shrink
    actions, after, _warnings = rbd.plan(want(source=source, size="1G"), None, source_size=2 * GIB,
                                         source_features=DEFAULT)
    assert verbs(actions) == ["clone"] and after["size"] == 2 * GIB
    actions, after, _warnings = rbd.plan(want(source=source, flatten=True), None, source_size=GIB,
                                         source_features=DEFAULT)
    assert verbs(actions) == ["clone", "flatten"] and after["parent"] is None


def test_import_is_at_least_the_virtual_size():
    actions, after, _warnings = rbd.plan(want(source="/srv/a.qcow2", size="1G"), None, source_size=2 * GIB,
                                         source_features=DEFAULT)
    assert actions == [("import", {"kind": "file", "path": "/srv/a.qcow2"}, 2 * GIB, None)]
    assert after["size"] == 2 * GIB and after["parent"] is None
    actions, _after, _warnings = rbd.plan(want(source="/srv/a.qcow2", size="4G"), None, source_size=2 * GIB,
                                          source_features=DEFAULT)
    assert actions[0][2] == 4 * GIB


def test_existing_image_with_the_same_source_is_not_a_change():
    current = facts(size=2 * GIB, parent="vms/debian12@base")
    assert rbd.plan(want(source="vms/debian12@base"), current) == ([], current, [])
    # made from a 2 GiB source with size 1G: the second run does not shrink it
    assert rbd.plan(want(source="vms/debian12@base", size="1G"), current, source_size=2 * GIB)[0] == []
    imported = facts(size=2 * GIB)
    assert rbd.plan(want(source="/srv/a.qcow2", size="1G"), imported, source_size=2 * GIB)[0] == []
    # the file is gone: its size is unknown, and the image is not shrunk
    assert rbd.plan(want(source="/srv/a.qcow2", size="1G"), imported, source_size=None)[0] == []
    # a flattened clone has no parent: no warning
    assert rbd.plan(want(source="vms/debian12@base", flatten=True), facts(size=2 * GIB))[2] == []


def test_a_different_parent_is_warned_about_not_recreated():
    current = facts(parent="vms/debian11@base")
    actions, after, warnings = rbd.plan(want(source="vms/debian12@base"), current)
    assert actions == [] and after == current
    assert "vms/debian11@base" in warnings[0] and "vms/debian12@base" in warnings[0]
    assert "nothing was re-created" in warnings[0]


def test_grow_and_shrink():
    actions, after, _warnings = rbd.plan(want(size="128M"), facts())
    assert actions == [("resize", 64 * MIB, 128 * MIB)] and after["size"] == 128 * MIB
    message = refused("size", want(size="32M"), facts())
    assert "32 MiB" in message and "64 MiB" in message and "allow_shrink" in message
    actions, after, _warnings = rbd.plan(want(size="32M", allow_shrink=True), facts())
    assert actions == [("resize", 64 * MIB, 32 * MIB)]
    assert rbd.plan(want(size="64M"), facts())[0] == []
    assert rbd.plan(want(), facts())[0] == []


def test_flatten_only_a_clone():
    actions, after, _warnings = rbd.plan(want(flatten=True), facts(parent="vms/t@s"))
    assert actions == [("flatten", "vms/t@s")] and after["parent"] is None
    assert rbd.plan(want(flatten=True), facts())[0] == []


def test_snapshots_declared_others_left_alone():
    current = facts(snapshots=[snap("keep"), snap("old", protected=True), snap("base")])
    wanted = want(snapshots=[{"name": "base", "protected": True}, {"name": "old", "state": "absent"},
                             {"name": "new"}])
    actions, after, _warnings = rbd.plan(wanted, current)
    assert actions == [("protect", "base"), ("unprotect", "old"), ("remove_snapshot", "old"), ("snapshot", "new")]
    assert [s["name"] for s in after["snapshots"]] == ["keep", "base", "new"]
    assert after["snapshots"][1]["protected"] and not after["snapshots"][2]["protected"]
    assert current["snapshots"][1]["protected"], "the plan does not touch the facts it was given"
    # protected omitted: an existing snapshot keeps its protection
    assert rbd.plan(want(snapshots=[{"name": "old"}]), current)[0] == []
    assert rbd.plan(want(snapshots=[{"name": "old", "protected": False}]), current)[0] == [("unprotect", "old")]


def test_snapshots_with_clones_need_force():
    current = facts(snapshots=[snap("base", protected=True, children=2)])
    children = {"base": [child("web1", namespace="acme"), child("web2", pool="other")]}
    message = refused("snapshots[0]", want(snapshots=[{"name": "base", "state": "absent"}]), current, children)
    assert "vms/acme/web1, other/web2" in message and "force" in message
    refused("snapshots[0].protected", want(snapshots=[{"name": "base", "protected": False}]), current, children)
    actions, after, _warnings = rbd.plan(want(snapshots=[{"name": "base", "state": "absent"}], force=True),
                                         current, children)
    assert actions == [("flatten_children", "base", children["base"]), ("unprotect", "base"),
                       ("remove_snapshot", "base")]
    assert after["snapshots"] == []


def test_absent():
    assert rbd.plan(want(state="absent"), None) == ([], None, [])
    assert rbd.plan(want(state="absent"), facts()) == ([("remove",)], None, [])


def test_absent_refuses_an_image_in_use_even_with_force():
    current = facts(watchers=["[fd00::1]:0/1234"])
    for force in (False, True):
        message = refused("state", want(state="absent", force=force), current)
        assert "[fd00::1]:0/1234" in message and "in use" in message


def test_absent_with_snapshots_or_clones_needs_force():
    current = facts(snapshots=[snap("a"), snap("b", protected=True, children=1)])
    children = {"b": [child("web1")]}
    assert "vms/web1 of @b" in refused("state", want(state="absent"), current, children)
    message = refused("state", want(state="absent"), facts(snapshots=[snap("a")]))
    assert "has snapshots (a)" in message and "force" in message
    actions, after, _warnings = rbd.plan(want(state="absent", force=True), current, children)
    assert actions == [("remove_snapshot", "a"), ("flatten_children", "b", [child("web1")]), ("unprotect", "b"),
                       ("remove_snapshot", "b"), ("remove",)]
    assert after is None


def test_features_on_an_existing_image():
    current = facts(features=["layering"])
    actions, after, _warnings = rbd.plan(want(features=["layering", "exclusive-lock", "object-map"]), current)
    assert actions == [("enable_features", ["exclusive-lock", "object-map"])]
    assert after["features"] == ["layering", "exclusive-lock", "object-map"]
    actions, after, _warnings = rbd.plan(want(features=["layering"]), facts())
    assert actions == [("disable_features", ["exclusive-lock", "object-map", "fast-diff", "deep-flatten"])]
    assert after["features"] == ["layering"]
    assert rbd.plan(want(features=DEFAULT), facts())[0] == []
    # librbd's own bits (operations on a format 2 clone) are not the user's to choose
    assert rbd.plan(want(features=DEFAULT), facts(features=DEFAULT + ["operations"]))[0] == []
    assert "layering" in refused("features", want(features=["exclusive-lock"]), facts())
    assert "deep-flatten" in refused("features", want(features=DEFAULT), facts(features=DEFAULT[:-1]))
    assert "in use" in refused("features", want(features=["layering"]), facts(watchers=["[::1]:0/1"]))


def test_view_leaves_out_watchers():
    shown = rbd.view(facts(watchers=["x"], snapshots=[snap("a")]))
    assert "watchers" not in shown and shown["snapshots"] == [snap("a")]
    assert rbd.view(None) == {}


def test_describe_every_action():
    wanted = want(namespace="acme")
    source = rbd.parse_source("vms/t@s")
    lines = [rbd.describe(wanted, action) for action in [
        ("create", GIB, None), ("clone", source, None), ("import", {"kind": "file", "path": "/a"}, GIB, None),
        ("resize", GIB, 2 * GIB), ("flatten", "vms/t@s"), ("enable_features", ["object-map"]),
        ("disable_features", ["fast-diff"]), ("snapshot", "s"), ("protect", "s"), ("unprotect", "s"),
        ("remove_snapshot", "s"), ("flatten_children", "s", [child("c")]), ("remove",)]]
    assert lines == [
        "create vms/acme/disk (1 GiB)", "clone vms/acme/disk from vms/t@s", "import /a into vms/acme/disk (1 GiB)",
        "resize vms/acme/disk from 1 GiB to 2 GiB", "flatten vms/acme/disk (detach from vms/t@s)",
        "enable features object-map of vms/acme/disk", "disable features fast-diff of vms/acme/disk",
        "create snapshot vms/acme/disk@s", "protect snapshot vms/acme/disk@s",
        "unprotect snapshot vms/acme/disk@s", "remove snapshot vms/acme/disk@s",
        "flatten vms/c (clones of vms/acme/disk@s)", "remove vms/acme/disk"]


def test_qemu_target_escapes_and_carries_no_key():
    target = rbd.qemu_rbd_target("vms", "acme", ".disk.importing", "hyper", "/etc/ceph/a:b=c.conf",
                                 "/etc/ceph/k.keyring", 30)
    assert target == ("rbd:vms/acme/.disk.importing:id=hyper:conf=/etc/ceph/a\\:b\\=c.conf"
                      ":keyring=/etc/ceph/k.keyring:client_mount_timeout=30:rados_mon_op_timeout=30"
                      ":rados_osd_op_timeout=30")
    assert ":keyring=" not in rbd.qemu_rbd_target("vms", "", "d", "admin", "/c", None, 5)
    assert rbd.qemu_rbd_target("vms", "", "d", "admin", "/c", None, 5).startswith("rbd:vms/d:id=admin:")
    with pytest.raises(ParameterError) as info:
        rbd.qemu_rbd_target("vms", "", "d", "admin", "/c", "/k@x", 5)
    assert info.value.parameter == "keyring"
    assert rbd.import_name("disk") == ".disk.importing"


# batches (volumes)

def batch(volumes, **top):
    params = {"pool": "vms", "namespace": "", "state": "present", "size": None, "source": None, "snapshots": [],
              "flatten": False, "allow_shrink": False, "force": False, "features": None, "volumes": volumes}
    params.update(top)
    return rbd.wanted_volumes(params)


def batch_refused(parameter, volumes, **top):
    with pytest.raises(ParameterError) as info:
        batch(volumes, **top)
    assert info.value.parameter == parameter, str(info.value)
    assert str(info.value).startswith(parameter + ": ")
    return str(info.value)


def test_entries_take_what_they_leave_out_from_the_top_level():
    wants = batch([{"name": "web1"}, {"name": "web2", "size": "20G", "namespace": None},
                   {"name": "data", "source": None, "size": "1G", "state": None},
                   {"name": "old", "state": "absent", "pool": "other", "namespace": ""}],
                  namespace="acme", source="vms/debian12@base", size="10G", force=True)
    assert [w["spec"] for w in wants] == ["vms/acme/web1", "vms/acme/web2", "vms/acme/data", "other/old"]
    assert [w["where"] for w in wants] == ["volumes[0]", "volumes[1]", "volumes[2]", "volumes[3]"]
    assert [w["size"] for w in wants] == [10 * GIB, 20 * GIB, GIB, 10 * GIB]
    assert wants[0]["source"]["spec"] == "vms/debian12@base"
    # null is "not given": the top level's value, so a top-level source stays
    assert wants[2]["source"]["spec"] == "vms/debian12@base" and wants[2]["state"] == "present"
    assert wants[3]["state"] == "absent" and wants[3]["namespace"] == "" and all(w["force"] for w in wants)
    # an entry is what the single image would be with the same options
    single = dict(want(name="web1", namespace="acme", source="vms/debian12@base", size="10G", force=True))
    assert dict(wants[0], where=None) == dict(single, where=None)
    assert batch([]) == []


def test_entries_default_to_the_single_images_defaults():
    (entry,) = batch([{"name": "disk", "size": "64M"}])
    assert entry == dict(want(size="64M"), where="volumes[0]")
    assert entry["state"] == "present" and entry["snapshots"] == [] and not entry["force"]
    assert batch(["disk"], size="64M")[0]["spec"] == "vms/disk", "a name alone is an entry"


def test_a_bad_entry_is_named_with_its_index():
    message = batch_refused("volumes[1].size", [{"name": "a", "size": "4M"}, {"name": "b", "size": "10X"}])
    assert "'10X' is not a size" in message and "for image vms/b" in message
    batch_refused("volumes[0].name", [{"name": "a b", "size": "4M"}])
    batch_refused("volumes[2].snapshots[1].name", [{"name": "a"}, {"name": "b"}, {
        "name": "c", "snapshots": [{"name": "s"}, {"name": "s"}]}], size="4M")
    batch_refused("volumes[0].features[0]", [{"name": "a", "features": ["bogus"]}], size="4M")
    assert "layering" in batch_refused("volumes[0].features", [{"name": "a", "features": ["exclusive-lock"]}],
                                       source="vms/t@s")
    batch_refused("volumes[0].source", [{"name": "a", "source": "t@s"}])
    batch_refused("volumes[1].namespace", [{"name": "a"}, {"name": "b", "namespace": "x y"}])
    batch_refused("volumes[0].state", [{"name": "a", "state": "gone"}])
    assert "unknown keys bogus" in batch_refused("volumes[0]", [{"name": "a", "bogus": 1}])
    batch_refused("volumes[1]", ["a", {"size": "1G"}])


def test_the_top_levels_values_are_checked_once_under_their_own_names():
    batch_refused("size", [{"name": "a", "size": "4M"}], size="10X")
    batch_refused("source", [{"name": "a"}], source="debian12")
    batch_refused("pool", [{"name": "a", "pool": "vms"}], pool="a/b")


def test_every_entry_needs_a_pool_and_an_image_once():
    message = batch_refused("volumes[1].pool", [{"name": "a", "pool": "vms"}, {"name": "b"}], pool=None)
    assert "image b" in message and "top level" in message
    assert batch([{"name": "a", "pool": "vms"}], pool=None)[0]["spec"] == "vms/a"
    message = batch_refused("volumes", [{"name": "a"}, {"name": "b"}, {"name": "a", "namespace": ""}], size="4M")
    assert "vms/a twice (volumes[0] and volumes[2])" in message
    # the same name in another namespace or pool is another image
    assert len(batch([{"name": "a"}, {"name": "a", "namespace": "acme"}, {"name": "a", "pool": "p"}])) == 3


def test_within_names_the_entry_and_the_image():
    error = rbd.within("volumes[3]", ParameterError("size", "is required to create image vms/x"), "vms/x", "image ")
    assert error.parameter == "volumes[3].size" and str(error) == "volumes[3].size: is required to create image vms/x"
    error = rbd.within("volumes[0]", ParameterError("snapshots[1].name", "'a b' is bad"), "vms/y", "image ")
    assert str(error) == "volumes[0].snapshots[1].name: 'a b' is bad (for image vms/y)"
    assert rbd.entry_index("volumes[12].snapshots[0].name") == 12
    assert rbd.entry_index("volumes") is None and rbd.entry_index("size") is None and rbd.entry_index(None) is None


def plan_batch(wants, cluster, children=None, sources=None):
    """Plan entries in order as the module does: ``cluster`` maps a spec to its
    facts, ``children`` a spec to its children map, ``sources`` a source spec
    to the (size, features) the cluster has."""
    planned = rbd.Batch(wants)
    out = []
    for entry in wants:
        current = planned.current(entry, cluster.get(entry["spec"]))
        found = planned.children(entry, (children or {}).get(entry["spec"], {}))
        size, features = None, DEFAULT
        if entry["source"] is not None and current is None:
            source = planned.source(entry["source"])
            if source is None:
                size, features = (sources or {})[entry["source"]["spec"]]
            else:
                size, features = source["size"], source["features"]
        actions, after, _warnings = rbd.plan(entry, current, found, size, features)
        planned.record(entry, actions, after)
        out.append((actions, after))
    return out


def test_a_clone_of_a_snapshot_an_earlier_entry_creates():
    wants = batch([{"name": "tmpl", "size": "8M", "features": ["layering"],
                    "snapshots": [{"name": "base", "protected": True}]},
                   {"name": "c1", "source": "vms/tmpl@base"}, {"name": "c2", "source": "vms/tmpl@base", "size": "16M"}])
    (tmpl, _after), (c1, c1_after), (c2, c2_after) = plan_batch(wants, {})
    assert verbs(tmpl) == ["create", "snapshot", "protect"]
    assert verbs(c1) == ["clone"] and c1_after["size"] == 8 * MIB and c1_after["features"] == ["layering"]
    assert c1_after["parent"] == "vms/tmpl@base"
    assert c2 == [("clone", rbd.parse_source("vms/tmpl@base"), None), ("resize", 8 * MIB, 16 * MIB)]


def test_a_source_an_earlier_entry_removes_or_lacks():
    planned = rbd.Batch(batch([{"name": "tmpl", "state": "absent"}, {"name": "c", "source": "vms/tmpl@base"}]))
    first = batch([{"name": "tmpl", "state": "absent"}])[0]
    planned.record(first, [("remove",)], None)
    with pytest.raises(ParameterError) as info:
        planned.source(rbd.parse_source("vms/tmpl@base"))
    assert info.value.parameter == "source" and "removed by volumes[0]" in str(info.value)
    planned = rbd.Batch([])
    planned.record(dict(first, state="present"), [], facts(name="tmpl", snapshots=[snap("other")]))
    with pytest.raises(ParameterError) as info:
        planned.source(rbd.parse_source("vms/tmpl@base"))
    assert "no snapshot base after volumes[0] (it has: other)" in str(info.value)
    assert planned.source(rbd.parse_source("vms/elsewhere@base")) is None, "not in the batch: the cluster's"
    assert planned.made_by("vms/tmpl") is None
    assert rbd.Batch(batch([{"name": "tmpl"}])).made_by("vms/tmpl") == "volumes[0]"


def test_removing_a_template_after_its_clones_in_one_batch():
    tmpl = facts(name="tmpl", snapshots=[snap("base", protected=True, children=2)])
    cluster = {"vms/tmpl": tmpl, "vms/c1": facts(name="c1", parent="vms/tmpl@base"),
               "vms/c2": facts(name="c2", parent="vms/tmpl@base")}
    children = {"vms/tmpl": {"base": [child("c1"), child("c2"), child("keep")]}}
    wants = batch([{"name": "c1"}, {"name": "c2"}, {"name": "tmpl", "force": True}], state="absent")
    out = plan_batch(wants, cluster, children)
    assert [actions for actions, _after in out[:2]] == [[("remove",)], [("remove",)]]
    # only the clone the batch leaves is flattened: the removed ones are gone by then
    assert out[2][0] == [("flatten_children", "base", [child("keep")]), ("unprotect", "base"),
                         ("remove_snapshot", "base"), ("remove",)]
    # without force the clone that stays is still a refusal
    wants = batch([{"name": "c1"}, {"name": "c2"}, {"name": "tmpl"}], state="absent")
    with pytest.raises(ParameterError) as info:
        plan_batch(wants, cluster, children)
    assert "vms/keep of @base" in str(info.value) and "c1" not in str(info.value)


def test_clones_an_earlier_entry_makes_count_for_a_later_one():
    tmpl = facts(name="tmpl", snapshots=[snap("base", protected=True)])
    wants = batch([{"name": "c1", "source": "vms/tmpl@base"},
                   {"name": "tmpl", "snapshots": [{"name": "base", "state": "absent"}]}])
    with pytest.raises(ParameterError) as info:
        plan_batch(wants, {"vms/tmpl": tmpl}, {"vms/tmpl": {"base": []}}, {"vms/tmpl@base": (64 * MIB, DEFAULT)})
    assert info.value.parameter == "snapshots[0]" and "has clones (vms/c1)" in str(info.value)
    wants[1]["force"] = True
    out = plan_batch(wants, {"vms/tmpl": tmpl}, {"vms/tmpl": {"base": []}}, {"vms/tmpl@base": (64 * MIB, DEFAULT)})
    made = {"pool": "vms", "pool_namespace": "", "image": "c1", "id": None, "trash": False}
    assert out[1][0][0] == ("flatten_children", "base", [made]), "found by name when it is applied"


def test_a_clone_an_earlier_entry_flattens_has_no_parent_after_it():
    tmpl = facts(name="tmpl", snapshots=[snap("base", protected=True, children=1)])
    cluster = {"vms/tmpl": tmpl, "vms/c1": facts(name="c1", parent="vms/tmpl@base")}
    wants = batch([{"name": "tmpl", "state": "absent", "force": True}, {"name": "c1", "flatten": True}])
    out = plan_batch(wants, cluster, {"vms/tmpl": {"base": [child("c1")]}})
    assert verbs(out[0][0]) == ["flatten_children", "unprotect", "remove_snapshot", "remove"]
    assert out[1] == ([], dict(cluster["vms/c1"], parent=None)), "nothing left to flatten"


def test_batch_diff_keys_the_images_that_change():
    made, grown = facts(name="a"), facts(name="b", size=128 * MIB)
    before, after = rbd.batch_diff([("vms/a", None, made, True), ("vms/b", facts(name="b"), grown, True),
                                    ("vms/c", None, None, True), ("vms/d", facts(name="d"), facts(name="d"), False),
                                    ("vms/e", facts(name="e", watchers=["x"]), None, True)])
    assert before == {"vms/b": rbd.view(facts(name="b")), "vms/e": rbd.view(facts(name="e"))}
    assert after == {"vms/a": rbd.view(made), "vms/b": rbd.view(grown)}
    assert rbd.batch_diff([]) == ({}, {})


SPEC = {
    "name": {"type": "str"},
    "snapshots": {"type": "list", "elements": "dict", "options": {"name": {"type": "str", "required": True}}},
    "volumes": {"type": "list", "elements": "dict", "options": {
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"]},
        "flatten": {"type": "bool"},
        "snapshots": {"type": "list", "elements": "dict", "options": {
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"}}}}},
}


@pytest.mark.parametrize("volumes,parameter", [
    ([{"name": "a"}, {"name": "b", "state": "gone"}], "volumes[1].state"),
    ([{"name": "a"}, {"name": "b"}, {"name": "c", "flatten": "maybe"}], "volumes[2].flatten"),
    ([{"name": "a"}, {"state": "absent"}], "volumes[1].name"),
    ([{"name": "a"}, {"name": "b", "bogus": 1}], "volumes[1].bogus"),
    ([{"name": "a", "snapshots": [{"name": "x"}]}, {"name": "b", "snapshots": [{"name": "y"}, {"name": "z", "state": "no"}]}],
     "volumes[1].snapshots[1].state"),
    ([{"name": "a"}, {"name": "b", "snapshots": [{"name": "x", "bogus": 1}]}], "volumes[1].snapshots[0].bogus"),
    # two bad entries: the one Ansible's message is about
    ([{"name": "a", "bogus": 1}, {"name": "b", "state": "gone"}], "volumes[1].state"),
])
def test_entry_parameter_finds_the_entry_of_ansibles_message(volumes, parameter):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    given = {"volumes": volumes}
    message = ArgumentSpecValidator(SPEC).validate(given).errors.msg
    if message.startswith("volumes."):
        message = "Unsupported parameters for (basic.py) module: " + message
    assert base.entry_parameter(SPEC, given, message) == parameter, message
    assert base.entry_parameter(SPEC, given, message, lists=("volumes",)) == parameter


def test_entry_parameter_leaves_other_messages():
    given = {"snapshots": [{"name": "a"}, {}]}
    assert base.entry_parameter(SPEC, given, "missing required arguments: name found in snapshots") == "snapshots[1].name"
    assert base.entry_parameter(SPEC, given, "missing required arguments: name found in snapshots",
                                lists=("volumes",)) is None
    assert base.entry_parameter(SPEC, {"name": 1}, "value of state must be one of: present, absent, got: x") is None
    assert base.entry_parameter(SPEC, {}, "something else") is None
    # no entry refuses it (the message was about something else): no guess
    assert base.entry_parameter(SPEC, {"volumes": [{"name": "a"}]},
                                "value of state must be one of: present, absent, got: x found in volumes") is None
