"""What a lab is made of: names, addresses and interface names (pure logic)."""

import hashlib
import ipaddress
import re

from .errors import LabError

LAB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
HOST_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
GROUP_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DEVICES = {"kvm": "/dev/kvm", "tun": "/dev/net/tun"}
RESERVED_HOSTS = {"fabric", "controller"}
# Host addresses start here, so ::1 (the controller) and a few others stay free.
FIRST_HOST_SUFFIX = 0x10
# The lab's outside IPv4 network, between its hosts only (the controller has
# no IPv4 address in it, so labs side by side never meet): a documentation
# range (TEST-NET-2), where the client reaches the edge's IPv4 frontends.
IPV4_PREFIX = ipaddress.IPv4Network("198.51.100.0/24")


def ula_prefix(lab):
    """A /64 unique local prefix derived from the lab name (RFC 4193 shape)."""
    global_id = hashlib.sha256(("hardway-lab:" + lab).encode()).digest()[:5]
    return ipaddress.IPv6Network((b"\xfd" + global_id + b"\x00\x00" + bytes(8), 64))


def controller_link_name(lab):
    """The controller's link into the lab: a name of at most 15 bytes per lab."""
    return "hwl" + hashlib.sha256(lab.encode()).hexdigest()[:8]


def netns_name(lab, name):
    # "." cannot occur in lab or host names: a lab's prefix never matches another lab
    return "hwl.%s.%s" % (lab, name)


def cgroup_name(lab, name):
    return "%s.%s" % (lab, name)


def lab_prefix(lab):
    """What every netns and cgroup name of this lab starts with (after hwl.)."""
    return lab + "."


class Host:
    """One lab host and everything derived from its place in the lab."""

    def __init__(self, lab, name, index, groups, devices):
        self.lab = lab
        self.name = name
        self.index = index
        self.groups = list(groups)
        self.devices = list(devices)
        self.address = ula_prefix(lab)[FIRST_HOST_SUFFIX + index]
        self.ipv4_address = IPV4_PREFIX[FIRST_HOST_SUFFIX + index]
        self.netns = netns_name(lab, name)
        # the host's end of its link, seen from the fabric namespace
        self.fabric_port = "p%d" % index
        self.cgroup = cgroup_name(lab, name)

    @property
    def device_paths(self):
        return [DEVICES[d] for d in self.devices]

    def as_dict(self):
        return {
            "name": self.name,
            "index": self.index,
            "groups": self.groups,
            "devices": self.devices,
            "address": str(self.address),
            "ipv4_address": str(self.ipv4_address),
            "netns": self.netns,
        }


class Topology:
    """A validated lab description."""

    def __init__(self, lab, hosts):
        self.lab = lab
        self.hosts = hosts
        self.prefix = ula_prefix(lab)
        self.controller_address = self.prefix[1]
        self.fabric_netns = netns_name(lab, "fabric")
        self.relay_cgroup = cgroup_name(lab, "_relay")
        self.controller_link = controller_link_name(lab)

    def spec(self):
        """The normalised spec this topology was made from."""
        return {"lab": self.lab, "hosts": [{"name": h.name, "groups": h.groups, "devices": h.devices}
                                           for h in self.hosts]}

    @property
    def netns_names(self):
        return [self.fabric_netns] + [h.netns for h in self.hosts]

    def host(self, name):
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError("lab %s has no host %s" % (self.lab, name))

    def groups(self):
        """Group name -> list of host names, in host order."""
        groups = {}
        for host in self.hosts:
            for group in host.groups:
                groups.setdefault(group, []).append(host.name)
        return groups


def parse(spec):
    """Build a Topology from a dict: {lab: name, hosts: [{name, groups, devices}]}."""
    if not isinstance(spec, dict):
        raise LabError("lab spec must be a mapping, got %s" % type(spec).__name__)
    unknown = set(spec) - {"lab", "hosts"}
    if unknown:
        raise LabError("lab spec: unknown keys %s" % ", ".join(sorted(unknown)))
    lab = spec.get("lab")
    if not isinstance(lab, str) or not LAB_NAME_RE.match(lab):
        raise LabError("lab spec: 'lab' must match %s, got %r" % (LAB_NAME_RE.pattern, lab))
    raw_hosts = spec.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise LabError("lab spec: 'hosts' must be a non-empty list")
    hosts = []
    seen = set()
    for index, raw in enumerate(raw_hosts):
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict):
            raise LabError("lab spec: hosts[%d] must be a name or a mapping" % index)
        unknown = set(raw) - {"name", "groups", "devices"}
        if unknown:
            raise LabError("lab spec: hosts[%d]: unknown keys %s" % (index, ", ".join(sorted(unknown))))
        name = raw.get("name")
        if not isinstance(name, str) or not HOST_NAME_RE.match(name) or name in RESERVED_HOSTS:
            raise LabError("lab spec: hosts[%d].name must match %s and not be one of %s, got %r"
                           % (index, HOST_NAME_RE.pattern, sorted(RESERVED_HOSTS), name))
        if name in seen:
            raise LabError("lab spec: host %s is listed twice" % name)
        seen.add(name)
        groups = raw.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) and GROUP_NAME_RE.match(g) for g in groups):
            raise LabError("lab spec: hosts[%d].groups must be a list of names matching %s"
                           % (index, GROUP_NAME_RE.pattern))
        devices = raw.get("devices", [])
        if not isinstance(devices, list) or not all(d in DEVICES for d in devices):
            raise LabError("lab spec: hosts[%d].devices must be a list of %s" % (index, sorted(DEVICES)))
        hosts.append(Host(lab, name, index, groups, devices))
    if len(hosts) > 200:
        raise LabError("lab spec: at most 200 hosts")
    return Topology(lab, hosts)
