"""The network role's port security (its nftables template and its helper
script, as installed on hypervisors) on bridges built by vxlan_network in
network namespaces: each attack is shown to work without the rules, then to
be dropped with them."""

import os
import sys
import time

import jinja2
import pytest

from module_runner import ROOT
from netfabric import routed_network, wait_for

ROLE = os.path.join(ROOT, "roles", "network")
HELPER = os.path.join(ROLE, "files", "port-security")
VM1, VM2, VM3, VM4 = "02:00:00:00:01:01", "02:00:00:00:02:02", "02:00:00:00:03:03", "02:00:00:00:04:04"
ROGUE = """interface eth0 {
    AdvSendAdvert on;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 4;
    prefix 2001:db8:bad::/64 { };
};
"""


def ruleset(isolated, uplinks):
    with open(os.path.join(ROLE, "templates", "port-security.nft.j2")) as handle:
        template = jinja2.Template(handle.read(), keep_trailing_newline=True)
    return template.render(network_vm_port_patterns=["vnet*", "p-*"], network_port_security_isolated=isolated,
                           network_port_security_uplinks=uplinks)


def counter(fabric, host, comment):
    rules = fabric.exec(host, ["nft", "list", "chain", "bridge", "hardway_port_security",
                               "input" if "host" in comment else "vm_port"]).stdout
    line = next(line for line in rules.splitlines() if comment in line)
    return int(line.split("packets ")[1].split()[0])


def bad_prefix(fabric, vm):
    return [a for a in fabric.addresses(vm) if a.startswith("2001:db8:bad:")]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    fab = routed_network("ps")
    try:
        for name, host, mac in (("vm1", "hv1", VM1), ("vm2", "hv2", VM2), ("vm3", "hv1", VM3), ("vm4", "hv1", VM4)):
            fab.add_vm(name, host, "br-vni100", mac)
        fab.rogue_conf = str(tmp_path_factory.mktemp("rogue") / "radvd.conf")
        with open(fab.rogue_conf, "w") as handle:
            handle.write(ROGUE)
        yield fab
    finally:
        fab.destroy()


def test_without_the_rules_the_attacks_work(cloud):
    """The control: a VM can advertise a prefix to others, spoof its MAC, and
    reach the hypervisor; so the drops below are the rules' doing."""
    hv1_bridge = cloud.link_local("hv1", "br-vni100")
    vm1 = cloud.link_local("vm1")
    assert cloud.wait_ping("vm1", hv1_bridge + "%eth0"), "control: vm1 cannot reach hv1 at all"
    assert cloud.wait_ping("vm2", hv1_bridge + "%eth0"), "control: vm2 cannot reach hv1 over the VXLAN"
    assert cloud.wait_ping("vm4", vm1 + "%eth0"), "control: vm4 cannot reach vm1"
    cloud.spawn("vm3", ["radvd", "--nodaemon", "--config", cloud.rogue_conf, "--pidfile",
                        cloud.rogue_conf + ".pid", "--logmethod", "stderr"])
    assert wait_for(lambda: bad_prefix(cloud, "vm1"), 20), "control: the rogue RA did not reach vm1"
    assert wait_for(lambda: bad_prefix(cloud, "vm2"), 20), "control: the rogue RA did not reach vm2"


def test_rules_load_validated_and_ports_are_registered(cloud, tmp_path):
    path = str(tmp_path / "port-security.nft")
    with open(path, "w") as handle:
        handle.write(ruleset(["br-vni100"], ["vxlan100"]))
    for host in ("hv1", "hv2"):
        cloud.exec(host, ["nft", "-c", "-f", path])
        cloud.exec(host, ["nft", "-f", path])
    for vm, host, mac in (("vm1", "hv1", VM1), ("vm2", "hv2", VM2), ("vm3", "hv1", VM3)):
        cloud.exec(host, ["sh", HELPER, "allow", "p-" + vm, mac, "br-vni100"])
    listing = cloud.exec("hv1", ["sh", HELPER, "list"]).stdout
    assert '"p-vm1" . 02:00:00:00:01:01' in listing and '"p-vm3"' in listing and "p-vm4" not in listing
    # reloading the rules keeps the registrations
    cloud.exec("hv1", ["nft", "-f", path])
    assert '"p-vm1" . 02:00:00:00:01:01' in cloud.exec("hv1", ["sh", HELPER, "list"]).stdout
    for bad in (["allow", "p-vm1;reboot", VM1], ["allow", "p-vm1", "02:00:00:00:01"], ["allow", "p-vm1"]):
        assert cloud.exec("hv1", ["sh", HELPER] + bad, check=False).returncode == 2


def test_rogue_router_advertisements_are_dropped(cloud):
    for vm in ("vm1", "vm2"):
        cloud.exec(vm, ["ip", "-6", "addr", "flush", "dev", "eth0", "scope", "global"])
        cloud.exec(vm, ["ip", "-6", "route", "flush", "proto", "ra"], check=False)
    before = counter(cloud, "hv1", "RA guard")
    assert wait_for(lambda: counter(cloud, "hv1", "RA guard") > before, 15), "the rogue radvd sent nothing"
    time.sleep(5)  # more than one advertisement interval of the rogue
    assert counter(cloud, "hv1", "RA guard") >= before + 2
    assert not bad_prefix(cloud, "vm1") and not bad_prefix(cloud, "vm2")


def test_frames_from_a_spoofed_mac_are_dropped(cloud):
    vm1 = cloud.link_local("vm1")
    assert cloud.wait_ping("vm3", vm1 + "%eth0"), "vm3 cannot reach vm1 with its own MAC"
    before = counter(cloud, "hv1", "source MAC")
    cloud.exec("vm3", ["ip", "link", "set", "eth0", "address", "02:00:00:00:99:99"])
    try:
        cloud.exec("vm3", ["ip", "neigh", "flush", "dev", "eth0"])
        assert cloud.ping("vm3", vm1 + "%eth0", count=3, wait=1).returncode != 0, "a spoofed MAC got through"
        assert counter(cloud, "hv1", "source MAC") > before
    finally:
        cloud.exec("vm3", ["ip", "link", "set", "eth0", "address", VM3])
    assert cloud.wait_ping("vm3", vm1 + "%eth0"), "vm3 cannot reach vm1 again with its own MAC"


def test_an_unregistered_port_sends_nothing(cloud):
    vm1 = cloud.link_local("vm1")
    assert cloud.ping("vm4", vm1 + "%eth0", count=2).returncode != 0


def test_vlan_tagged_frames_from_a_vm_are_dropped(cloud):
    before = counter(cloud, "hv1", "VLAN tag")
    # an 802.1Q frame for VLAN 5 from the VM's own MAC (the kernel here has no vlan links)
    frame = "ffffffffffff" + VM3.replace(":", "") + "8100" + "0005" + "86dd" + "00" * 46
    cloud.exec("vm3", [sys.executable, "-c", "import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
                       "s.bind(('eth0', 0)); s.send(bytes.fromhex('%s'))" % frame])
    assert wait_for(lambda: counter(cloud, "hv1", "VLAN tag") > before, 5)


def test_vms_reach_each_other_but_not_the_hypervisor(cloud):
    vm1, vm2 = cloud.link_local("vm1"), cloud.link_local("vm2")
    assert cloud.wait_ping("vm1", vm2 + "%eth0") and cloud.wait_ping("vm2", vm1 + "%eth0")
    hv1_bridge = cloud.link_local("hv1", "br-vni100")
    assert cloud.ping("vm1", hv1_bridge + "%eth0", count=2).returncode != 0, "a local VM reached the hypervisor"
    assert cloud.ping("vm2", hv1_bridge + "%eth0", count=2).returncode != 0, "a remote VM reached the hypervisor"
    assert counter(cloud, "hv1", "host not on this VM's network") > 0
    assert counter(cloud, "hv1", "host not on this network") > 0
