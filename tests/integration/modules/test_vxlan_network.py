"""vxlan_network against the kernel's netlink, in network namespaces: two
hypervisors and an edge host on an IPv6 underlay, VMs on the tenant bridges."""

import re

import pytest

from module_runner import run_module
from netfabric import Fabric

import badinput

MAC1, MAC2, MAC3 = "02:00:00:00:01:01", "02:00:00:00:02:02", "02:00:00:00:03:03"


@pytest.fixture(scope="module")
def fabric():
    fab = Fabric("vx")
    try:
        for host in ("hv1", "hv2", "edge"):
            fab.add_host(host)
        yield fab
    finally:
        fab.destroy()


def vxlan(fabric, host, **args):
    check = args.pop("_check", False)
    args.setdefault("device", "eth0")
    return run_module("vxlan_network", dict(args, netns=fabric.ns(host)), check=check)


def state(fabric, host):
    """The host's links, addresses and forwarding entries, without what the
    kernel changes on its own as time passes (lifetimes, the end of duplicate
    address detection)."""
    commands = (["ip", "-o", "link"], ["ip", "-o", "addr"], ["bridge", "fdb", "show"])
    return [re.sub(r" (tentative|valid_lft \S+|preferred_lft \S+)", "", fabric.exec(host, argv).stdout)
            for argv in commands]


def link(fabric, host, name):
    return fabric.exec(host, ["ip", "-d", "link", "show", name], check=False)


def test_multicast_network_carries_frames_between_hypervisors(fabric):
    for host in ("hv1", "hv2"):
        result = vxlan(fabric, host, vni=100)
        assert result["changed"], result
        assert result["vxlan"]["group"] == "ff05::e000:0:64"
        assert result["vxlan"]["mtu"] == 1430 and result["bridge"]["mtu"] == 1430
        assert result["bridge"]["addresses"] == []
    result = vxlan(fabric, "edge", vni=100, addresses=["2001:db8:100::1/64"])
    assert result["bridge"]["addresses"] == ["2001:db8:100::1/64"]
    details = link(fabric, "hv1", "vxlan100").stdout
    assert "vxlan id 100 group ff05::e000:0:64 dev eth0" in details and "dstport 4789" in details and "ttl 5" in details
    assert "master br-vni100" in details
    assert fabric.exec("hv1", ["cat", "/proc/sys/net/ipv6/conf/br-vni100/accept_ra"]).stdout.strip() == "0"

    fabric.add_vm("vm1", "hv1", "br-vni100", MAC1)
    fabric.add_vm("vm2", "hv2", "br-vni100", MAC2)
    vm2 = fabric.link_local("vm2")
    assert fabric.wait_ping("vm1", vm2 + "%eth0"), "vm1 cannot reach vm2 over VNI 100"
    assert fabric.wait_ping("edge", vm2 + "%br-vni100"), "the edge cannot reach vm2 over VNI 100"


def test_second_run_changes_nothing_and_check_mode_changes_nothing(fabric):
    again = vxlan(fabric, "hv1", vni=100)
    assert not again["changed"] and again["actions"] == [], again
    again = vxlan(fabric, "edge", vni=100, addresses=["2001:db8:100::1/64"])
    assert not again["changed"], again

    planned = vxlan(fabric, "hv1", vni=4242, _check=True)
    assert planned["changed"] and "create_bridge br-vni4242" in planned["actions"]
    assert planned["diff"]["before"] == {} and planned["diff"]["after"]["vxlan"]["vni"] == 4242
    assert link(fabric, "hv1", "vxlan4242").returncode != 0, "check mode created a device"
    assert link(fabric, "hv1", "br-vni4242").returncode != 0, "check mode created a bridge"


def test_drift_is_corrected_and_shown(fabric):
    # in place: MTU, bridge membership, accept_ra, a stray address
    fabric.exec("hv2", ["ip", "link", "set", "vxlan100", "nomaster"])
    fabric.exec("hv2", ["ip", "link", "set", "br-vni100", "mtu", "1300"])
    fabric.exec("hv2", ["ip", "addr", "add", "2001:db8:dead::2/64", "dev", "br-vni100", "nodad"])
    fabric.exec("hv2", ["sysctl", "-qw", "net.ipv6.conf.br-vni100.accept_ra=1"])
    result = vxlan(fabric, "hv2", vni=100)
    assert result["changed"]
    assert set(result["actions"]) >= {"set_bridge_mtu 1430", "set_master br-vni100", "set_accept_ra False",
                                      "del_address 2001:db8:dead::2/64"}, result["actions"]
    assert result["diff"]["before"]["bridge"]["mtu"] == 1300 and result["diff"]["after"]["bridge"]["mtu"] == 1430
    assert result["diff"]["before"]["vxlan"]["master"] is None
    assert not vxlan(fabric, "hv2", vni=100)["changed"]

    # the kernel cannot change group, port or TTL in place: the device is recreated
    fabric.exec("hv2", ["ip", "link", "del", "vxlan100"])
    fabric.exec("hv2", ["ip", "link", "add", "vxlan100", "type", "vxlan", "id", "100", "group", "ff05::bad",
                        "dev", "eth0", "dstport", "4790"])
    result = vxlan(fabric, "hv2", vni=100)
    assert result["actions"][0] == "recreate_vxlan group, port, ttl", result["actions"]
    assert result["diff"]["before"]["vxlan"]["group"] == "ff05::bad"
    assert result["vxlan"]["group"] == "ff05::e000:0:64" and result["vxlan"]["port"] == 4789
    assert not vxlan(fabric, "hv2", vni=100)["changed"]
    vm2 = fabric.link_local("vm2")
    assert fabric.wait_ping("vm1", vm2 + "%eth0"), "VNI 100 does not carry traffic after the correction"


def test_explicit_group_of_the_seed_and_derived_group_at_the_top_of_the_range(fabric):
    result = vxlan(fabric, "hv1", vni=16777215, _check=True)
    assert result["vxlan"]["group"] == "ff05::e000:ff:ffff" and result["bridge"]["name"] == "br-vni16777215"
    result = vxlan(fabric, "hv1", vni=7, group="ff05::100", mtu=1400)
    assert result["vxlan"]["group"] == "ff05::100" and result["vxlan"]["mtu"] == 1400
    assert not vxlan(fabric, "hv1", vni=7, group="ff05::100", mtu=1400)["changed"]
    assert vxlan(fabric, "hv1", vni=7, state="absent")["changed"]


def test_two_vnis_are_isolated(fabric):
    for host in ("hv1", "hv2"):
        vxlan(fabric, host, vni=300)
    fabric.add_vm("vm3", "hv2", "br-vni300", MAC3)
    vm3 = fabric.link_local("vm3")
    vm2 = fabric.link_local("vm2")
    assert not fabric.wait_ping("vm1", vm3 + "%eth0", timeout=3), "VNI 100 reached a VM on VNI 300"
    # the same VM address space on both segments: still no crossing
    assert fabric.wait_ping("vm1", vm2 + "%eth0")
    neighbours = fabric.exec("vm3", ["ip", "-6", "neigh", "show", "dev", "eth0"]).stdout
    assert MAC1 not in neighbours


def test_absent_refuses_while_vms_are_attached_unless_forced(fabric):
    refused = vxlan(fabric, "hv2", vni=300, state="absent")
    assert refused.get("failed") and refused["parameter"] == "state" and "p-vm3" in refused["msg"], refused
    assert link(fabric, "hv2", "br-vni300").returncode == 0
    planned = vxlan(fabric, "hv2", vni=300, state="absent", force=True, _check=True)
    assert planned["changed"] and link(fabric, "hv2", "vxlan300").returncode == 0
    removed = vxlan(fabric, "hv2", vni=300, state="absent", force=True)
    assert removed["changed"] and removed["diff"]["before"]["vxlan"]["vni"] == 300
    assert link(fabric, "hv2", "vxlan300").returncode != 0 and link(fabric, "hv2", "br-vni300").returncode != 0
    assert not vxlan(fabric, "hv2", vni=300, state="absent")["changed"]


def test_unicast_remotes_work_where_the_underlay_drops_multicast():
    fab = Fabric("uc")
    try:
        addresses = dict((host, fab.add_host(host)) for host in ("hv1", "hv2", "edge"))
        # the fabric drops every multicast VXLAN packet: only unicast can work
        fab.exec("fabric", ["nft", "add table bridge f; add chain bridge f fw { type filter hook forward priority 0; }; "
                            "add rule bridge f fw ip6 daddr ff00::/8 udp dport 4789 counter drop"])
        for host in ("hv1", "hv2"):
            peers = [a for h, a in sorted(addresses.items()) if h != host]
            result = run_module("vxlan_network", {"vni": 200, "local": addresses[host], "remotes": peers,
                                                  "netns": fab.ns(host)})
            assert result["changed"] and result["vxlan"]["remotes"] == sorted(peers), result
            assert result["vxlan"]["learning"] is False and result["vxlan"]["group"] is None
            details = fab.exec(host, ["ip", "-d", "link", "show", "vxlan200"]).stdout
            assert "nolearning" in details
            fdb = fab.exec(host, ["bridge", "fdb", "show", "dev", "vxlan200"]).stdout
            for peer in peers:
                assert "00:00:00:00:00:00 dst %s self permanent" % peer in fdb, fdb
        fab.add_vm("vm1", "hv1", "br-vni200", MAC1)
        fab.add_vm("vm2", "hv2", "br-vni200", MAC2)
        vm2 = fab.link_local("vm2")
        assert fab.wait_ping("vm1", vm2 + "%eth0"), "unicast VXLAN does not carry traffic"

        # a peer leaves: its forwarding entry goes, the others stay; idempotent
        peers = [addresses["hv2"]]
        result = run_module("vxlan_network", {"vni": 200, "local": addresses["hv1"], "remotes": peers,
                                              "netns": fab.ns("hv1")})
        assert result["actions"] == ["del_remote %s" % addresses["edge"]], result["actions"]
        fdb = fab.exec("hv1", ["bridge", "fdb", "show", "dev", "vxlan200"]).stdout
        assert addresses["edge"] not in fdb and addresses["hv2"] in fdb
        assert not run_module("vxlan_network", {"vni": 200, "local": addresses["hv1"], "remotes": peers,
                                                "netns": fab.ns("hv1")})["changed"]
        counters = fab.exec("fabric", ["nft", "list", "chain", "bridge", "f", "fw"]).stdout
        assert "packets 0 " in counters, "a multicast VXLAN packet was sent in unicast mode: " + counters
    finally:
        fab.destroy()


@pytest.mark.parametrize("args, parameter, words", [
    ({"vni": 0}, "vni", "1..16777215"),
    ({"vni": 16777216}, "vni", "1..16777215"),
    ({"vni": 100, "group": "2001:db8::1"}, "group", "not an IPv6 multicast"),
    ({"vni": 100, "group": "ff02::42"}, "group", "link-local scope"),
    ({"vni": 100, "group": "not-an-address"}, "group", "not an IPv6 address"),
    ({"vni": 100, "device": "nosuchdev0"}, "device", "no interface named nosuchdev0"),
    ({"vni": 100, "device": "eth0; reboot"}, "device", "not a usable interface name"),
    ({"vni": 100, "bridge": "br-with-a-very-long-name"}, "bridge", "not a usable interface name"),
    ({"vni": 100, "mtu": 9000}, "mtu", "does not fit"),
    ({"vni": 100, "mtu": 1000}, "mtu", "1280"),
    ({"vni": 100, "addresses": ["2001:db8::1"]}, "addresses[0]", "prefix length"),
    ({"vni": 100, "addresses": ["2001:db8::1/64", "fe80::1/64"]}, "addresses[1]", "link-local"),
    ({"vni": 100, "dstport": 70000}, "dstport", "UDP port"),
    ({"vni": 100, "ttl": 0}, "ttl", "hop limit"),
    ({"vni": 100, "remotes": ["ff05::1"], "device": None}, "remotes[0]", "not a unicast"),
    ({"vni": 100, "remotes": [], "device": None}, "remotes", "at least one"),
    ({"vni": 100, "remotes": ["2001:db8::2"], "local": "192.0.2.1", "device": None}, "local", "address family"),
    ({"vni": 100, "netns": "no-such-netns-here"}, "netns", "no network namespace"),
])
def test_bad_input_fails_naming_the_parameter_and_changes_nothing(fabric, args, parameter, words):
    before = state(fabric, "hv1")
    args = dict(args)
    netns = args.pop("netns", fabric.ns("hv1"))
    if "device" not in args:
        args["device"] = "eth0"
    elif args["device"] is None:
        del args["device"]
    result = run_module("vxlan_network", dict(args, netns=netns))
    assert result.get("failed"), result
    assert result.get("parameter") == parameter and words in result["msg"], result
    assert state(fabric, "hv1") == before


def test_mutually_exclusive_options_are_refused():
    result = run_module("vxlan_network", {"vni": 5, "group": "ff05::5", "remotes": ["2001:db8::1"]})
    assert result.get("failed") and "mutually exclusive" in result["msg"] and "group" in result["msg"]
    result = run_module("vxlan_network", {"vni": 5, "netns": "x", "persist": True})
    assert result.get("failed") and "netns" in result["msg"] and "persist" in result["msg"]


def test_a_generated_corpus_of_bad_input_is_refused_naming_the_parameter(fabric):
    valid = {"vni": 100, "device": "eth0", "netns": fabric.ns("hv1")}
    # persist and netns are mutually exclusive: a persist of any value is refused for that first
    cases = badinput.corpus(badinput.argument_spec("vxlan_network"), valid, names=("device", "bridge", "name"),
                            skip=("netns", "persist"),
                            bad={"vni": [0, 16777216, -1], "group": ["2001:db8::1", "239.1.1.1", "ff05::zz"],
                                 "local": ["ff02::1", "zz::1", "::"], "mtu": [100, 70000], "ttl": [-1, 256],
                                 "dstport": [0, 65536], "addresses[]": ["2001:db8::1/129", "zz::/64", "ff02::1/64"],
                                 "remotes[]": ["ff02::1", "zz::1"], "device": ["x" * 16]})
    assert len(cases) >= 30
    found = badinput.problems(cases, lambda args: run_module("vxlan_network", args), lambda: state(fabric, "hv1"))
    assert not found, "\n".join(found)
