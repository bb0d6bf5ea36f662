"""Pure logic of vxlan_network: defaults, validation, plan, networkd files."""

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import vxlan
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError


def params(**extra):
    base = {"vni": 100, "device": "eth0", "group": None, "remotes": None, "local": None, "bridge": None,
            "name": None, "dstport": 4789, "ttl": 5, "mtu": None, "addresses": [], "accept_ra": False}
    base.update(extra)
    return base


def test_derived_names_groups_and_mtu():
    want = vxlan.wanted(params(), 1500)
    assert want["bridge"]["name"] == "br-vni100" and want["vxlan"]["name"] == "vxlan100"
    assert want["vxlan"]["group"] == "ff05::e000:0:64"
    assert want["vxlan"]["mtu"] == want["bridge"]["mtu"] == 1430
    assert vxlan.default_group(1) == "ff05::e000:0:1" and vxlan.default_group(16777215) == "ff05::e000:ff:ffff"
    assert vxlan.wanted(params(), 9000)["vxlan"]["mtu"] == 8930
    assert len(vxlan.bridge_name(16777215)) <= 15 and len(vxlan.vxlan_name(16777215)) <= 15


def test_every_vni_has_its_own_group_and_multicast_mac():
    # the low 32 bits of the group become the MAC 33:33:xx:xx:xx:xx
    low32 = set(int(vxlan.GROUP_BASE + vni) & 0xFFFFFFFF for vni in (1, 2, 255, 256, 65535, 65536, 16777215))
    assert len(low32) == 7


def test_unicast_mode_sorts_and_dedups_peers_and_turns_learning_off():
    want = vxlan.wanted(params(remotes=["2001:db8::3", "2001:db8::2", "2001:db8::3"], device=None), None)
    assert want["vxlan"]["remotes"] == ["2001:db8::2", "2001:db8::3"]
    assert want["vxlan"]["group"] is None and want["vxlan"]["learning"] is False and want["vxlan"]["remotes_mode"]


@pytest.mark.parametrize("extra, parameter", [
    ({"vni": 0}, "vni"), ({"vni": True}, "vni"), ({"group": "ff01::1"}, "group"), ({"group": "::1"}, "group"),
    ({"device": None}, "device"), ({"bridge": "vxlan100"}, "bridge"), ({"name": "a b"}, "name"),
    ({"remotes": ["2001:db8::1", "192.0.2.1"], "device": None}, "remotes"),
    ({"local": "ff05::1"}, "local"), ({"local": "192.0.2.1"}, "local"),
    ({"addresses": ["::/0"]}, "addresses[0]"), ({"addresses": ["2001:db8::1/64", "junk"]}, "addresses[1]"),
    ({"mtu": 1500}, "mtu"), ({"ttl": 256}, "ttl"), ({"dstport": 0}, "dstport"),
])
def test_bad_values_name_their_parameter(extra, parameter):
    with pytest.raises(ParameterError) as caught:
        vxlan.wanted(params(**extra), 1500)
    assert caught.value.parameter == parameter and str(caught.value).startswith(parameter + ": ")


def actual_of(want):
    bridge = dict(want["bridge"])
    vx = dict(want["vxlan"])
    return {"bridge": bridge, "vxlan": vx}


def test_plan_is_empty_when_actual_is_wanted_and_creates_everything_from_nothing():
    want = vxlan.wanted(params(addresses=["2001:db8:100::1/64"]), 1500)
    assert vxlan.plan(actual_of(want), want) == []
    verbs = [step[0] for step in vxlan.plan({"bridge": None, "vxlan": None}, want)]
    assert verbs[0] == "create_bridge" and "create_vxlan" in verbs and "add_address" in verbs
    assert verbs.index("create_vxlan") < verbs.index("set_master") and verbs[-1] == "up_bridge"


def test_plan_fixes_in_place_what_the_kernel_can_change_and_recreates_the_rest():
    want = vxlan.wanted(params(addresses=["2001:db8:100::1/64"]), 1500)
    actual = actual_of(want)
    actual["bridge"].update(mtu=1400, addresses=["2001:db8:100::9/64"], accept_ra=True)
    actual["vxlan"].update(mtu=1400, master=None)
    assert vxlan.plan(actual, want) == [
        ("set_bridge_mtu", 1430), ("set_accept_ra", False), ("add_address", "2001:db8:100::1/64"),
        ("del_address", "2001:db8:100::9/64"), ("set_vxlan_mtu", 1430), ("set_master", "br-vni100")]
    actual = actual_of(want)
    actual["vxlan"].update(group="ff05::1", port=8472)
    steps = vxlan.plan(actual, want)
    assert steps[0] == ("recreate_vxlan", "group, port")
    assert ("set_master", "br-vni100") in steps and ("up_vxlan", "vxlan100") in steps


def test_plan_adds_and_removes_unicast_peers():
    want = vxlan.wanted(params(remotes=["2001:db8::2", "2001:db8::3"], device=None), None)
    actual = actual_of(want)
    actual["vxlan"]["remotes"] = ["2001:db8::3", "2001:db8::4"]
    assert vxlan.plan(actual, want) == [("add_remote", "2001:db8::2"), ("del_remote", "2001:db8::4")]


def test_networkd_files_mirror_the_runtime_values():
    want = vxlan.wanted(params(addresses=["2001:db8:100::1/64"], local="2001:db8::11"), 1500)
    files = vxlan.networkd_files(want, "/etc/systemd/network/10-eth0.network")
    netdev = files["/etc/systemd/network/60-hardway-vxlan100.netdev"]
    assert "VNI=100\n" in netdev and "Group=ff05::e000:0:64\n" in netdev and "Local=2001:db8::11\n" in netdev
    assert "MTUBytes=1430\n" in netdev and "DestinationPort=4789\n" in netdev and "TTL=5\n" in netdev
    assert "Independent" not in netdev
    assert "Address=2001:db8:100::1/64\n" in files["/etc/systemd/network/60-hardway-br-vni100.network"]
    assert "IPv6AcceptRA=no\n" in files["/etc/systemd/network/60-hardway-br-vni100.network"]
    assert files["/etc/systemd/network/10-eth0.network.d/60-hardway-vxlan100.conf"].endswith("VXLAN=vxlan100\n")
    with pytest.raises(ParameterError) as caught:
        vxlan.networkd_files(want, None)
    assert caught.value.parameter == "persist"


def test_unicast_networkd_files_have_one_fdb_entry_per_peer_and_no_underlay():
    want = vxlan.wanted(params(remotes=["2001:db8::2", "2001:db8::3"], device=None), None)
    files = vxlan.networkd_files(want, None)
    network = files["/etc/systemd/network/60-hardway-vxlan100.network"]
    assert network.count("[BridgeFDB]") == 2 and "Destination=2001:db8::3\n" in network
    assert "Independent=yes\n" in files["/etc/systemd/network/60-hardway-vxlan100.netdev"]
    assert "MacLearning=no\n" in files["/etc/systemd/network/60-hardway-vxlan100.netdev"]
    assert not [path for path in files if ".network.d/" in path]


def test_owned_files_are_only_this_networks():
    names = ["60-hardway-vxlan100.netdev", "60-hardway-br-vni100.network", "60-hardway-vxlan1000.netdev",
             "10-eth0.network", "10-eth0.network.d/60-hardway-vxlan100.conf",
             "10-eth0.network.d/60-hardway-vxlan1000.conf", "other.d/60-hardway-vxlan100.conf"]
    assert vxlan.owned_files("vxlan100", "br-vni100", names) == [
        "/etc/systemd/network/10-eth0.network.d/60-hardway-vxlan100.conf",
        "/etc/systemd/network/60-hardway-br-vni100.network",
        "/etc/systemd/network/60-hardway-vxlan100.netdev"]
