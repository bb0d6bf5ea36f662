"""A small cloud network made of network namespaces: an underlay fabric (a
bridge in its own namespace), hosts ("hypervisors", "edge") with an underlay
interface on it, and "VMs" (a namespace with one NIC plugged into a
hypervisor's tenant bridge). Everything is named after the fabric and removed
by ``destroy()``, also after a failed test."""

import ipaddress
import os
import signal
import subprocess
import time

from module_runner import run_module


def run(argv, check=True, timeout=30):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s %s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc


class Fabric:
    UNDERLAY = ipaddress.IPv6Network("fd00:5eed:5::/64")

    def __init__(self, tag):
        self.tag = "hwt%d%s" % (os.getpid() % 10000, tag)
        self.namespaces = []
        self.processes = []
        self.hosts = {}
        self.fabric = self._netns("fabric")
        run(["ip", "-n", self.fabric, "link", "add", "fab0", "type", "bridge", "mcast_snooping", "0"])
        run(["ip", "-n", self.fabric, "link", "set", "fab0", "up"])

    def _netns(self, name):
        full = "%s-%s" % (self.tag, name)
        run(["ip", "netns", "add", full])
        self.namespaces.append(full)
        run(["ip", "-n", full, "link", "set", "lo", "up"])
        return full

    def ns(self, name):
        return "%s-%s" % (self.tag, name)

    def add_host(self, name):
        """A host with ``eth0`` on the fabric; returns its underlay address."""
        netns = self._netns(name)
        address = str(self.UNDERLAY[len(self.hosts) + 0x11])
        peer = "u%d" % len(self.hosts)
        run(["ip", "-n", self.fabric, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", netns])
        run(["ip", "-n", self.fabric, "link", "set", peer, "master", "fab0", "up"])
        run(["ip", "-n", netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", netns, "addr", "add", "%s/64" % address, "dev", "eth0", "nodad"])
        self.hosts[name] = address
        return address

    def add_vm(self, name, host, bridge, mac):
        """A VM namespace whose ``eth0`` (MAC ``mac``) is plugged into ``bridge``
        on ``host`` through the port ``p-<name>``; returns the port name."""
        netns = self._netns(name)
        port = "p-%s" % name
        run(["ip", "-n", self.ns(host), "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns])
        run(["ip", "-n", netns, "link", "set", "eth0", "address", mac, "up"])
        run(["ip", "-n", self.ns(host), "link", "set", port, "master", bridge, "up"])
        return port

    def exec(self, name, argv, check=True, timeout=30):
        return run(["ip", "netns", "exec", self.ns(name)] + list(argv), check=check, timeout=timeout)

    def spawn(self, name, argv):
        """A daemon in a namespace, stopped by destroy()."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(name)] + list(argv),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.processes.append(proc)
        return proc

    def ping(self, name, address, count=1, wait=1):
        return self.exec(name, ["ping", "-6", "-n", "-c", str(count), "-W", str(wait), address], check=False)

    def wait_ping(self, name, address, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            if self.ping(name, address).returncode == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)

    def addresses(self, name, device="eth0", scope="global"):
        """The usable addresses (DAD finished) of a device."""
        out = self.exec(name, ["ip", "-6", "-o", "addr", "show", "dev", device, "scope", scope]).stdout
        return [line.split()[3] for line in out.splitlines() if "tentative" not in line]

    def link_local(self, name, device="eth0"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = self.exec(name, ["ip", "-6", "-o", "addr", "show", "dev", device, "scope", "link"]).stdout
            if out and "tentative" not in out:
                return out.split()[3].split("/")[0]
            time.sleep(0.2)
        raise AssertionError("%s/%s has no usable link-local address" % (name, device))

    def destroy(self):
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for netns in reversed(self.namespaces):
            run(["ip", "netns", "del", netns], check=False)
        self.namespaces = []


def wait_for(predicate, timeout=20):
    """The first true value of ``predicate()`` within ``timeout`` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    return predicate()


def routed_network(tag, vni=100, gateway="2001:db8:100::1/64"):
    """A fabric with hosts hv1, hv2 and edge, and tenant network ``vni`` on
    all three, built by vxlan_network; the edge has the gateway address."""
    fab = Fabric(tag)
    try:
        for host in ("hv1", "hv2", "edge"):
            fab.add_host(host)
            extra = {"addresses": [gateway]} if host == "edge" else {}
            result = run_module("vxlan_network", dict(extra, vni=vni, device="eth0", netns=fab.ns(host)))
            assert result["changed"], result
    except BaseException:
        fab.destroy()
        raise
    return fab


def eui64(prefix, mac):
    """The SLAAC address of ``mac`` in ``prefix`` (modified EUI-64)."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    interface_id = octets[:3] + [0xFF, 0xFE] + octets[3:]
    network = ipaddress.IPv6Network(prefix)
    return str(network[int.from_bytes(bytes(interface_id), "big")])
