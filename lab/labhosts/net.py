"""The lab's IPv6 underlay: a bridge in its own namespace, one link per host,
one link to the controller, and the apt relay on the controller's address."""

import os

from .system import run
from .topology import IPV4_PREFIX

BRIDGE = "fabric0"


def list_netns(prefix):
    proc = run(["ip", "-o", "netns", "list"], check=False)
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def _sysctl(netns, key, value):
    path = "/proc/sys/" + key.replace(".", "/")
    if netns:
        run(["ip", "netns", "exec", netns, "sh", "-c", "echo %s > %s" % (value, path)])
    else:
        with open(path, "w", encoding="ascii") as knob:
            knob.write(str(value))


def create_fabric(topo):
    """The bridge every host and the controller plug into."""
    fab = topo.fabric_netns
    run(["ip", "netns", "add", fab])
    run(["ip", "-n", fab, "link", "set", "lo", "up"])
    # no multicast snooping: the fabric floods multicast like a dumb switch,
    # so VXLAN over multicast works without a querier
    run(["ip", "-n", fab, "link", "add", BRIDGE, "type", "bridge", "mcast_snooping", "0"])
    _sysctl(fab, "net.ipv6.conf.%s.disable_ipv6" % BRIDGE, 1)
    run(["ip", "-n", fab, "link", "set", BRIDGE, "up"])
    # the controller's link: the machine reaches the hosts only through it
    link = topo.controller_link
    run(["ip", "link", "add", link, "type", "veth", "peer", "name", "controller", "netns", fab])
    run(["ip", "-n", fab, "link", "set", "controller", "master", BRIDGE, "up"])
    # never let anything the lab advertises configure the machine's own stack
    _sysctl(None, "net.ipv6.conf.%s.accept_ra" % link, 0)
    _sysctl(None, "net.ipv6.conf.%s.autoconf" % link, 0)
    run(["ip", "link", "set", link, "up"])
    run(["ip", "addr", "add", "%s/%d" % (topo.controller_address, topo.prefix.prefixlen),
         "dev", link, "nodad"])


def create_host_link(topo, host):
    run(["ip", "netns", "add", host.netns])
    run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
    run(["ip", "-n", topo.fabric_netns, "link", "add", host.fabric_port, "type", "veth",
         "peer", "name", "eth0", "netns", host.netns])
    run(["ip", "-n", topo.fabric_netns, "link", "set", host.fabric_port, "master", BRIDGE, "up"])
    run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", host.netns, "addr", "add", "%s/%d" % (host.address, topo.prefix.prefixlen),
         "dev", "eth0", "nodad"])
    # with its broadcast address, exactly as systemd-networkd makes it from
    # the host's underlay file: networkd fails a link ("Numerical result out
    # of range") rather than update an address that differs from its own
    run(["ip", "-n", host.netns, "addr", "add", "%s/%d" % (host.ipv4_address, IPV4_PREFIX.prefixlen),
         "broadcast", "+", "dev", "eth0"])


def delete_netns(names):
    for name in names:
        run(["ip", "netns", "del", name], check=False)


def delete_link(name):
    if os.path.exists("/sys/class/net/" + name):
        run(["ip", "link", "del", name], check=False)


def relay_command(topo, upstream):
    """socat forwarding HTTP from the lab to the Debian mirror, nothing else."""
    return ["socat", "TCP6-LISTEN:80,bind=[%s],reuseaddr,fork" % topo.controller_address,
            "TCP:%s:80" % upstream]
