"""The network role's isolation between tenant networks (its nftables
template, as installed on routers) on an edge routing three networks built by
vxlan_network in network namespaces, with a VM on each and a client on the
underlay: routing between the networks is shown to work without the rules,
then to be dropped with them, but for the networks that reach each other;
every network still reaches the client and its own gateway."""

import os

import jinja2
import pytest

from module_runner import ROOT, run_module
from netfabric import routed_network

TEMPLATE = os.path.join(ROOT, "roles", "network", "templates", "isolation.nft.j2")
NETWORKS = [{"name": "net100", "vni": 100}, {"name": "net200", "vni": 200, "reach": ["net300"]},
            {"name": "net300", "vni": 300}, {"name": "gone", "vni": 400, "state": "absent", "reach": ["net100"]}]
# VM: (hypervisor, network's VNI, MAC)
VMS = {"vm1": ("hv1", 100, "02:00:00:00:01:01"), "vm2": ("hv2", 200, "02:00:00:00:02:02"),
       "vm3": ("hv1", 300, "02:00:00:00:03:03")}


def ruleset(networks):
    # trim_blocks as Ansible's template module renders
    with open(TEMPLATE) as handle:
        template = jinja2.Template(handle.read(), keep_trailing_newline=True, trim_blocks=True)
    return template.render(network_isolation_networks=networks)


def address(vni, host=0x10):
    return "2001:db8:%d::%x" % (vni, host)


def counter(fabric):
    rules = fabric.exec("edge", ["nft", "list", "chain", "inet", "hardway_isolation", "forward"]).stdout
    line = next(line for line in rules.splitlines() if "between tenant networks" in line)
    return int(line.split("packets ")[1].split()[0])


@pytest.fixture(scope="module")
def cloud():
    fab = routed_network("iso", vni=100, gateway="2001:db8:100::1/64")
    try:
        for vni in (200, 300):
            for host in ("hv1", "hv2", "edge"):
                extra = {"addresses": ["2001:db8:%d::1/64" % vni]} if host == "edge" else {}
                result = run_module("vxlan_network", dict(extra, vni=vni, device="eth0", netns=fab.ns(host)))
                assert result["changed"], result
        fab.exec("edge", ["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"])
        client = fab.add_host("client")
        fab.exec("client", ["ip", "-6", "route", "add", "2001:db8::/32", "via", fab.hosts["edge"]])
        fab.client = client
        for name, (host, vni, mac) in VMS.items():
            fab.add_vm(name, host, "br-vni%d" % vni, mac)
            fab.exec(name, ["ip", "-6", "addr", "add", address(vni) + "/64", "dev", "eth0", "nodad"])
            fab.exec(name, ["ip", "-6", "route", "add", "default", "via", "2001:db8:%d::1" % vni])
        yield fab
    finally:
        fab.destroy()


def test_the_template_lists_the_present_networks_and_links_both_ways():
    rules = ruleset(NETWORKS)
    assert 'tenant_bridges { "br-vni100", "br-vni200", "br-vni300" }' in rules
    assert 'links { "br-vni200" . "br-vni300", "br-vni300" . "br-vni200" }' in rules
    assert "br-vni400" not in rules
    # a router of no networks: the table is there, empty
    assert "add element" not in ruleset([])


def test_without_the_rules_networks_reach_each_other(cloud):
    """The control: the edge routes between the networks, so the drops below are the rules' doing."""
    assert cloud.wait_ping("vm1", address(200)), "control: vm1 cannot reach vm2 through the edge"
    assert cloud.wait_ping("vm1", address(300)), "control: vm1 cannot reach vm3 through the edge"
    assert cloud.wait_ping("vm2", cloud.client), "control: vm2 cannot reach the client"


def test_with_the_rules_networks_are_isolated_but_for_those_that_reach_each_other(cloud, tmp_path):
    path = str(tmp_path / "isolation.nft")
    with open(path, "w") as handle:
        handle.write(ruleset(NETWORKS))
    cloud.exec("edge", ["nft", "-c", "-f", path])
    for _load in range(2):  # loading again replaces the table, it does not add to it
        cloud.exec("edge", ["nft", "-f", path])
    assert cloud.exec("edge", ["nft", "list", "chain", "inet", "hardway_isolation", "forward"]).stdout.count(
        "between tenant networks") == 1
    before = counter(cloud)
    for source, target in (("vm1", 200), ("vm1", 300), ("vm2", 100), ("vm3", 100)):
        assert cloud.ping(source, address(target), count=2).returncode != 0, "%s reached net%d" % (source, target)
    assert counter(cloud) > before
    # the networks that reach each other, both ways
    assert cloud.wait_ping("vm2", address(300)) and cloud.wait_ping("vm3", address(200))
    # every network reaches the world and its own gateway
    for name in VMS:
        assert cloud.wait_ping(name, cloud.client), "%s cannot reach the client" % name
    assert cloud.wait_ping("vm1", "2001:db8:100::1")
