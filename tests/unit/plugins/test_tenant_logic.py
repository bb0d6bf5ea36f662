"""The tenant data model: instance records, placement, frontend servers."""

import copy

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import tenant
from ansible_collections.hardway.cloud.plugins.module_utils.addressing import derived_mac, eui64_address
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

NETWORKS = [{"name": "net100", "vni": 100, "prefix": "2001:db8:100::/64"},
            {"name": "net200", "vni": 200, "prefix": "2001:db8:200::/64", "bridge": "br-two"},
            {"name": "l2only", "vni": 300},
            {"name": "gone", "vni": 400, "prefix": "2001:db8:400::/64", "state": "absent"}]
FLAVORS = {"small": {"vcpus": 1, "memory": 512, "disk": "4G"}, "large": {"vcpus": "4", "memory": "2G", "disk": 10 << 30}}
IMAGES = [{"name": "debian12", "source": "/srv/images/d12.qcow2"},
          {"name": "direct", "source": "/srv/d.qcow2", "kernel": "/srv/vmlinuz", "initrd": "/srv/initrd.img",
           "cmdline": "root=/dev/vda"},
          {"name": "old", "state": "absent"}]
WEB1 = {"name": "web1", "tenant": "acme", "flavor": "small", "image": "debian12", "networks": ["net100", "net200"],
        "publish": [{"frontend": "web", "port": 80}, {"frontend": "admin", "port": 8080, "network": "net200"}]}


def records(*instances, **kwargs):
    return tenant.instances(list(instances), FLAVORS, IMAGES, NETWORKS, **kwargs)


def test_a_record_has_everything_the_modules_are_given():
    record = records(WEB1, ssh_authorized_keys=["ssh-ed25519 AAAA k"])[0]
    mac0, mac1 = derived_mac("web1", 0), derived_mac("web1", 1)
    assert record["vcpus"] == 1 and record["memory"] == 512 and record["disk"] == 4 << 30
    assert record["root"] == {"pool": "vms", "name": "web1-root", "source": "vms/image-debian12@base",
                              "size": 4 << 30}
    assert record["seed"] == {"pool": "vms", "image": "web1-seed"}
    assert record["interfaces"] == [{"bridge": "br-vni100", "mac": mac0, "prefix": "2001:db8:100::/64"},
                                    {"bridge": "br-two", "mac": mac1, "prefix": "2001:db8:200::/64"}]
    assert record["address"] == eui64_address("2001:db8:100::/64", mac0)
    assert record["publish"] == [{"frontend": "web", "port": 80, "address": record["address"]},
                                 {"frontend": "admin", "port": 8080,
                                  "address": eui64_address("2001:db8:200::/64", mac1)}]
    assert record["network_config"] == {"version": 1, "config": [
        {"type": "physical", "name": "eth0", "mac_address": mac0, "subnets": [{"type": "ipv6_slaac"}]},
        {"type": "physical", "name": "eth1", "mac_address": mac1, "subnets": [{"type": "ipv6_slaac"}]}]}
    assert record["metadata"] == {"version": 1, "tenant": "acme", "instance": "web1", "flavor": "small",
                                  "image": "debian12", "networks": [{"name": "net100", "prefix": "2001:db8:100::/64"},
                                                                    {"name": "net200", "prefix": "2001:db8:200::/64"}]}
    assert record["ssh_authorized_keys"] == ["ssh-ed25519 AAAA k"] and record["boot"] is None


def test_given_macs_kernel_boot_and_networks_without_prefix():
    item = dict(WEB1, image="direct", flavor="large", networks=[{"name": "l2only", "mac": "52:54:00:AB:CD:EF"}, "net100"],
                publish=[], ssh_authorized_keys=[])
    record = records(item, ssh_authorized_keys=["ignored"], image_dir="/img")[0]
    assert record["interfaces"][0] == {"bridge": "br-vni300", "mac": "52:54:00:ab:cd:ef", "prefix": None}
    assert record["address"] == eui64_address("2001:db8:100::/64", derived_mac("web1", 1))
    assert record["network_config"]["config"][0]["subnets"] == []
    assert record["boot"] == {"kernel": "/img/direct/vmlinuz", "initrd": "/img/direct/initrd.img",
                              "cmdline": "root=/dev/vda"}
    assert record["vcpus"] == 4 and record["memory"] == 2048 and record["ssh_authorized_keys"] == []


def test_absent_instances_need_only_their_name_and_tenant():
    record = records({"name": "old1", "tenant": "acme", "state": "absent", "delete_volumes": True})[0]
    assert record["state"] == "absent" and record["memory"] == 0 and record["delete_volumes"]
    assert record["seed_volume"] == {"pool": "vms", "name": "old1-seed"}


@pytest.mark.parametrize("change, where", [
    ({"name": "Web_1"}, "hardway_instances[Web_1].name"),
    ({"name": None}, "hardway_instances[0].name"),
    ({"tenant": "a b"}, "hardway_instances[web1].tenant"),
    ({"state": "on"}, "hardway_instances[web1].state"),
    ({"flavor": "huge"}, "hardway_instances[web1].flavor"),
    ({"image": "old"}, "hardway_instances[web1].image"),
    ({"networks": ["net999"]}, "hardway_instances[web1].networks[0]"),
    ({"networks": ["gone"]}, "hardway_instances[web1].networks[0]"),
    ({"networks": [{"name": "net100", "mac": "nope"}]}, "hardway_instances[web1].networks[0].mac"),
    ({"networks": "net100"}, "hardway_instances[web1].networks"),
    ({"publish": [{"frontend": "web", "port": 0}]}, "hardway_instances[web1].publish[0].port"),
    ({"publish": [{"frontend": "web", "port": "http"}]}, "hardway_instances[web1].publish[0].port"),
    ({"publish": [{"port": 80}]}, "hardway_instances[web1].publish[0].frontend"),
    ({"publish": [{"frontend": "web", "port": 80, "network": "net999"}]}, "hardway_instances[web1].publish[0].network"),
    ({"publish": [{"frontend": "web", "port": 80, "weight": 3}]}, "hardway_instances[web1].publish[0].weight"),
    ({"colour": "red"}, "hardway_instances[web1].colour"),
    ({"user_data": 3}, "hardway_instances[web1].user_data"),
    ({"ssh_authorized_keys": "ssh-ed25519 AAAA"}, "hardway_instances[web1].ssh_authorized_keys"),
    ({"apply": "now"}, "hardway_instances[web1].apply"),
    ({"delete_volumes": "yes please"}, "hardway_instances[web1].delete_volumes"),
    ({"hypervisor": ""}, "hardway_instances[web1].hypervisor"),
])
def test_bad_instances_name_the_key(change, where):
    with pytest.raises(ParameterError) as error:
        records(dict(WEB1, **change))
    assert error.value.parameter == where


def test_no_address_to_publish_and_names_given_twice():
    with pytest.raises(ParameterError) as error:
        records(dict(WEB1, networks=["l2only"]))
    assert error.value.parameter == "hardway_instances[web1].publish[0]"
    with pytest.raises(ParameterError) as error:
        records(WEB1, WEB1)
    assert error.value.parameter == "hardway_instances[web1].name" and "twice" in str(error.value)


@pytest.mark.parametrize("flavors, where", [
    ({"f": {"vcpus": 0, "memory": 512, "disk": "1G"}}, "hardway_flavors[f].vcpus"),
    ({"f": {"vcpus": 1, "memory": "lots", "disk": "1G"}}, "hardway_flavors[f].memory"),
    ({"f": {"vcpus": 1, "memory": 512, "disk": "-1G"}}, "hardway_flavors[f].disk"),
    ({"f": {"vcpus": 1, "memory": 512}}, "hardway_flavors[f].disk"),
    ({"f": {"vcpus": 1, "memory": 512, "disk": "1G", "gpu": 1}}, "hardway_flavors[f].gpu"),
    (["small"], "hardway_flavors"),
])
def test_bad_flavors_name_the_key(flavors, where):
    with pytest.raises(ParameterError) as error:
        tenant.instances([], flavors, IMAGES, NETWORKS)
    assert error.value.parameter == where


@pytest.mark.parametrize("image, where", [
    ({"name": "d", "source": "relative.qcow2"}, "hardway_images[d].source"),
    ({"name": "d"}, "hardway_images[d].source"),
    ({"name": "D!", "source": "/x"}, "hardway_images[D!].name"),
    ({"name": "d", "source": "/x", "initrd": "/i"}, "hardway_images[d].initrd"),
    ({"name": "d", "source": "/x", "cmdline": "quiet"}, "hardway_images[d].cmdline"),
    ({"name": "d", "source": "/x", "state": "gone"}, "hardway_images[d].state"),
    ({"name": "d", "source": "/x", "format": "qcow2"}, "hardway_images[d].format"),
])
def test_bad_images_name_the_key(image, where):
    with pytest.raises(ParameterError) as error:
        tenant.images([image], "vms")
    assert error.value.parameter == where


def test_images_are_templates_with_a_snapshot_to_clone():
    images = tenant.images(IMAGES, "pool2")
    assert images["debian12"]["rbd"] == "image-debian12"
    assert images["debian12"]["clone_source"] == "pool2/image-debian12@base"
    assert images["old"]["state"] == "absent"


def _instance(name, **extra):
    return dict(WEB1, name=name, publish=[], **extra)


def test_placement_fills_the_hypervisor_with_most_memory_left_and_keeps_ties_in_name_order():
    recs = records(*[_instance("vm%d" % i) for i in range(5)])
    hosts = {"hv2": {"memory": 2048}, "hv1": {"memory": 2048}, "hv3": {"memory": 1024}}
    assert tenant.placement(recs, hosts) == {"vm0": "hv1", "vm1": "hv2", "vm2": "hv1", "vm3": "hv2", "vm4": "hv1"}
    hosts["hv3"]["memory"] = 4096
    assert list(tenant.placement(recs, hosts).values()) == ["hv3"] * 4 + ["hv1"]


def test_placement_keeps_instances_where_they_are_and_honours_explicit_ones():
    recs = records(_instance("a"), _instance("b", hypervisor="hv1"), _instance("c"))
    hosts = {"hv1": {"memory": 4096, "domains": ["c", "unrelated"]}, "hv2": {"memory": 1024, "domains": []}}
    # c stays on hv1 and counts there; b is pinned to hv1; a goes where most is left
    assert tenant.placement(recs, hosts) == {"a": "hv1", "b": "hv1", "c": "hv1"}
    hosts["hv1"]["memory"] = 1024
    assert tenant.placement(recs, hosts)["a"] == "hv2"


def test_placement_refuses_moves_duplicates_and_unknown_hypervisors():
    recs = records(_instance("a", hypervisor="hv2"))
    with pytest.raises(ParameterError) as error:
        tenant.placement(recs, {"hv1": {"memory": 1, "domains": ["a"]}, "hv2": {"memory": 1}})
    assert error.value.parameter == "hardway_instances[a].hypervisor" and "not moved" in str(error.value)
    with pytest.raises(ParameterError) as error:
        tenant.placement(records(_instance("a")), {"hv1": {"memory": 1, "domains": ["a"]},
                                                   "hv2": {"memory": 1, "domains": ["a"]}})
    assert "hv1 and hv2" in str(error.value)
    with pytest.raises(ParameterError) as error:
        tenant.placement(recs, {"hv1": {"memory": 1}})
    assert error.value.parameter == "hardway_instances[a].hypervisor"
    with pytest.raises(ParameterError):
        tenant.placement(records(_instance("a")), {})


def test_absent_instances_are_found_where_they_are_or_nowhere():
    recs = records({"name": "x", "tenant": "t", "state": "absent"}, {"name": "y", "tenant": "t", "state": "absent"})
    assert tenant.placement(recs, {"hv1": {"memory": 1, "domains": ["x"]}}) == {"x": "hv1", "y": None}


def test_frontend_servers_are_the_publishing_instances_not_absent():
    web2 = dict(WEB1, name="web2", publish=[{"frontend": "web", "port": 80}, {"frontend": "web", "port": 81}])
    gone = {"name": "web3", "tenant": "acme", "state": "absent"}
    recs = records(WEB1, web2, gone)
    servers = tenant.frontend_servers(recs, "web")
    assert [s["name"] for s in servers] == ["web1", "web2-80", "web2-81"]
    assert servers[0] == {"name": "web1", "address": recs[0]["address"], "port": 80}
    assert tenant.frontend_servers(recs, "admin")[0]["address"] == recs[0]["networks"][1]["address"]
    assert tenant.frontend_servers(recs, "none") == []


def test_records_do_not_change_their_input():
    item = copy.deepcopy(WEB1)
    records(item)
    assert item == WEB1
