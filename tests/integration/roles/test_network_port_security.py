"""The network role's port security (its nftables template and its helper
script, as installed on hypervisors) on bridges built by vxlan_network in
network namespaces: each attack (rogue router advertisements, spoofed MACs and
IPv6 sources, neighbor advertisements for the gateway's address, VLAN tags,
reaching the hypervisor) is shown to work without the rules, then to be
dropped with them."""

import os
import sys
import time

import jinja2
import pytest

from module_runner import ROOT
from netfabric import eui64, routed_network, wait_for

ROLE = os.path.join(ROOT, "roles", "network")
HELPER = os.path.join(ROLE, "files", "port-security")
VM1, VM2, VM3, VM4 = "02:00:00:00:01:01", "02:00:00:00:02:02", "02:00:00:00:03:03", "02:00:00:00:04:04"
PREFIX, GATEWAY = "2001:db8:100::/64", "2001:db8:100::1"
MACS = {"vm1": VM1, "vm2": VM2, "vm3": VM3}
# an unsolicited neighbor advertisement (override) for TARGET with MAC as its
# link-layer address, sent from SOURCE to all nodes, as a raw frame
ADVERTISE = """
import socket, struct, sys
source, target, mac = sys.argv[1:4]
mac = bytes.fromhex(mac.replace(":", ""))
src, dst = socket.inet_pton(socket.AF_INET6, source), socket.inet_pton(socket.AF_INET6, "ff02::1")
icmp = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + socket.inet_pton(socket.AF_INET6, target) + bytes([2, 1]) + mac
data = src + dst + struct.pack("!I", len(icmp)) + bytes([0, 0, 0, 58]) + icmp
total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
while total >> 16:
    total = (total & 0xFFFF) + (total >> 16)
icmp = icmp[:2] + struct.pack("!H", ~total & 0xFFFF) + icmp[4:]
frame = (bytes.fromhex("333300000001") + mac + b"\\x86\\xdd" + struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255)
         + src + dst + icmp)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind(("eth0", 0))
for _count in range(3):
    sock.send(frame)
"""
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
                           network_port_security_uplinks=uplinks,
                           network_port_security_prefixes={"br-vni100": PREFIX, "br-vni200": "2001:db8:200::/64"})


def counter(fabric, host, comment):
    rules = fabric.exec(host, ["nft", "list", "chain", "bridge", "hardway_port_security",
                               "input" if "host" in comment else "vm_port"]).stdout
    line = next(line for line in rules.splitlines() if comment in line)
    return int(line.split("packets ")[1].split()[0])


def bad_prefix(fabric, vm):
    return [a for a in fabric.addresses(vm) if a.startswith("2001:db8:bad:")]


def addressed(fabric):
    """vm1, vm2 and vm3 with their own SLAAC addresses in the network, each
    knowing the others' MACs (so what they send is not held up by neighbor
    discovery from a source the rules drop), and vm1 counting what reaches it
    from each source."""
    for vm, mac in MACS.items():
        fabric.exec(vm, ["ip", "-6", "addr", "replace", eui64(PREFIX, mac) + "/64", "dev", "eth0", "nodad"])
        for other, other_mac in MACS.items():
            if other != vm:
                fabric.exec(vm, ["ip", "-6", "neigh", "replace", eui64(PREFIX, other_mac), "lladdr", other_mac,
                                 "dev", "eth0", "nud", "permanent"])
    fabric.exec("vm1", ["nft", "add", "table", "inet", "seen"])
    fabric.exec("vm1", ["nft", "add", "chain", "inet", "seen", "input",
                        "{ type filter hook input priority 0; policy accept; }"])


def reaches_vm1(fabric, source, add=True):
    """Whether a ping from vm3 with IPv6 source ``source`` reaches vm1 (its
    link-local address from a link-local source, else its global one);
    ``source`` is added to vm3's eth0 for it unless ``add`` is false."""
    local = source.startswith("fe80:")
    destination = fabric.link_local("vm1") + "%eth0" if local else eui64(PREFIX, VM1)
    fabric.exec("vm1", ["nft", "flush", "chain", "inet", "seen", "input"])
    fabric.exec("vm1", ["nft", "add", "rule", "inet", "seen", "input", "ip6", "saddr", source, "counter"])
    if add:
        # (the rogue advertisements above may have given vm3 the address already)
        added = fabric.exec("vm3", ["ip", "-6", "addr", "add", source + "/128", "dev", "eth0", "nodad"], check=False)
        add = added.returncode == 0
        assert add or "already assigned" in added.stderr, added.stderr
    try:
        fabric.exec("vm3", ["ping", "-6", "-n", "-c", "2", "-W", "1", "-I", source + ("%eth0" if local else ""),
                            destination], check=False)
    finally:
        if add:
            fabric.exec("vm3", ["ip", "-6", "addr", "del", source + "/128", "dev", "eth0"])
    rules = fabric.exec("vm1", ["nft", "list", "chain", "inet", "seen", "input"]).stdout
    return int(rules.split("packets ")[1].split()[0]) > 0


def gateway_mac_on_vm1(fabric, ping=True):
    """The MAC vm1 has for the gateway (after one ping of it)."""
    if ping:
        fabric.ping("vm1", GATEWAY, count=1, wait=2)
    return fabric.exec("vm1", ["ip", "-6", "neigh", "show", GATEWAY, "dev", "eth0"]).stdout.split("lladdr ")[1].split()[0]


def advertise_gateway_from_vm3(fabric):
    fabric.exec("vm3", [sys.executable, "-c", ADVERTISE, fabric.link_local("vm3"), GATEWAY, VM3])
    time.sleep(0.5)


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
    addressed(cloud)
    assert reaches_vm1(cloud, eui64(PREFIX, VM3), add=False), "control: vm3 cannot reach vm1 from its address"
    assert reaches_vm1(cloud, GATEWAY), "control: vm3 cannot send as the gateway"
    assert reaches_vm1(cloud, "2001:db8:bad::1"), "control: vm3 cannot send from another prefix"
    edge_mac = gateway_mac_on_vm1(cloud)
    advertise_gateway_from_vm3(cloud)
    try:
        assert gateway_mac_on_vm1(cloud, ping=False) == VM3, "control: vm3's advertisement did not take the gateway"
    finally:
        cloud.exec("vm1", ["ip", "-6", "neigh", "del", GATEWAY, "dev", "eth0"], check=False)
    assert gateway_mac_on_vm1(cloud) == edge_mac


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
    assert '"p-vm1" . 0xfffe000101' in listing and '"p-vm1" . 2001:db8:100::/64' in listing
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


def test_spoofed_ipv6_sources_are_dropped(cloud):
    """A VM sends from its own addresses only: the EUI-64 of its MAC in its
    network's prefix or the link-local one, or :: (duplicate address detection)."""
    addressed(cloud)
    assert reaches_vm1(cloud, eui64(PREFIX, VM3), add=False), "vm3 cannot reach vm1 from its own address"
    assert reaches_vm1(cloud, cloud.link_local("vm3"), add=False), "vm3 cannot reach vm1 from its link-local address"
    before = counter(cloud, "hv1", "IPv6 source not the port's address")
    # the gateway's address, another VM's, and a link-local address not its own
    assert not reaches_vm1(cloud, GATEWAY), "vm3 sent as the gateway"
    assert not reaches_vm1(cloud, eui64(PREFIX, VM2)), "vm3 sent as vm2"
    assert not reaches_vm1(cloud, "fe80::1"), "vm3 sent from another link-local address"
    assert counter(cloud, "hv1", "IPv6 source not the port's address") >= before + 3
    # its own interface identifier in a prefix that is not its network's
    before = counter(cloud, "hv1", "IPv6 source outside the port's network")
    assert not reaches_vm1(cloud, eui64("2001:db8:bad::/64", VM3)), "vm3 sent from another network's prefix"
    assert counter(cloud, "hv1", "IPv6 source outside the port's network") > before
    # a VM joining the network still does duplicate address detection (from ::)
    cloud.exec("vm3", ["ip", "-6", "addr", "del", eui64(PREFIX, VM3) + "/64", "dev", "eth0"])
    cloud.exec("vm3", ["ip", "-6", "addr", "add", eui64(PREFIX, VM3) + "/64", "dev", "eth0"])
    assert wait_for(lambda: eui64(PREFIX, VM3) + "/64" in cloud.addresses("vm3"), 10), "DAD did not finish"
    assert reaches_vm1(cloud, eui64(PREFIX, VM3), add=False)


def test_a_vm_cannot_advertise_another_hosts_address(cloud):
    """Neighbor advertisements for the gateway's address from a VM are dropped:
    its neighbors keep the gateway's MAC."""
    edge_mac = gateway_mac_on_vm1(cloud)
    assert edge_mac != VM3
    before = counter(cloud, "hv1", "neighbor advertisement for another's address")
    advertise_gateway_from_vm3(cloud)
    assert counter(cloud, "hv1", "neighbor advertisement for another's address") >= before + 3
    assert gateway_mac_on_vm1(cloud, ping=False) == edge_mac, "vm3 took the gateway's address"
    # its own advertisements pass: vm1 learns vm3's link-local address from one
    cloud.exec("vm1", ["ip", "-6", "neigh", "flush", "dev", "eth0"])
    assert cloud.wait_ping("vm1", cloud.link_local("vm3") + "%eth0")


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
