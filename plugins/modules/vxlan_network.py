#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vxlan_network
short_description: A tenant L2 network as a VXLAN device on a Linux bridge
version_added: 0.1.0
description:
  - Creates, corrects and removes one tenant network on a host, a VXLAN device over an IPv6 (or IPv4) underlay
    enslaved to a Linux bridge, through netlink (pyroute2); no C(ip) command is run.
  - Multicast mode (the default) floods unknown destinations to a multicast group joined on the underlay
    I(device). Unicast mode (I(remotes)) sends them to a fixed list of peers instead, through static all-zero
    forwarding entries, with learning of the default destination off.
  - Drift is corrected. A wrong MTU, bridge membership, peer list, bridge address or C(accept_ra) is fixed in
    place; a wrong VNI, group, local address, underlay device, port, TTL or mode cannot be changed by the kernel
    in place, so the VXLAN device is recreated (a short interruption of that network only).
  - With I(persist), systemd-networkd files describe the same network so it comes back at boot, and the
    underlay's own C(.network) file gets a drop-in attaching the VXLAN device. The files are rendered from the
    same values as the runtime state, so the two agree.
  - Removing a network whose bridge still has other ports (VMs) is refused unless I(force).
author: hardway.cloud developers (!UNKNOWN)
requirements:
  - pyroute2 (Debian package C(python3-pyroute2)) on the managed host
extends_documentation_fragment:
  - hardway.cloud.attributes
options:
  vni:
    description: VXLAN network identifier, 1 to 16777215.
    type: int
    required: true
  state:
    description: Whether the network exists on this host.
    type: str
    choices: [present, absent]
    default: present
  bridge:
    description: Name of the bridge. Defaults to C(br-vni<vni>).
    type: str
  name:
    description: Name of the VXLAN device. Defaults to C(vxlan<vni>).
    type: str
  device:
    description:
      - The underlay interface. Required in multicast mode (the group is joined on it); in unicast mode it binds
        the tunnel to that interface.
    type: str
  local:
    description: Source address of the tunnel on the underlay. The kernel chooses one when omitted.
    type: str
  group:
    description:
      - IPv6 multicast group of the network, of site scope (C(ff05::/16)) or wider.
      - Defaults to C(ff05::e000:0:0) plus the VNI (VNI 100 is C(ff05::e000:0:64), VNI 16777215 is
        C(ff05::e000:ff:ffff)), so every VNI has its own group and its own multicast MAC address.
      - Mutually exclusive with I(remotes).
    type: str
  remotes:
    description:
      - Unicast peers (underlay addresses of the other hypervisors and edge hosts). Selects unicast mode.
    type: list
    elements: str
  dstport:
    description: UDP destination port.
    type: int
    default: 4789
  ttl:
    description: Hop limit of the encapsulated packets.
    type: int
    default: 5
  mtu:
    description:
      - MTU of the bridge and the VXLAN device. Defaults to the underlay's MTU minus the 70 bytes of VXLAN over
        IPv6 (1430 on a 1500-byte underlay, also when there is no underlay device).
    type: int
  addresses:
    description:
      - Addresses on the bridge with their prefix lengths, for the network's router (the edge host).
        Hypervisor bridges carry none. The list is exact; link-local and learned (SLAAC) addresses are left alone.
    type: list
    elements: str
    default: []
  accept_ra:
    description: Whether the bridge accepts router advertisements. Off, so a hypervisor never takes an address
      from a tenant network.
    type: bool
    default: false
  netns:
    description: Operate inside this named network namespace (C(/run/netns/<name>)). Cannot be combined with
      I(persist).
    type: str
  persist:
    description: Write systemd-networkd C(.netdev)/C(.network) files (C(/etc/systemd/network/60-hardway-*)) that
      recreate the network at boot; with I(state=absent), remove them. Needs the underlay device managed by
      systemd-networkd when I(device) is set.
    type: bool
    default: false
  force:
    description: With I(state=absent), remove the bridge even if other ports (VMs) are still attached.
    type: bool
    default: false
notes:
  - Changes of VNI, group, local address, device, port, TTL or mode recreate the VXLAN device only; the bridge
    and the VMs attached to it stay.
seealso:
  - module: hardway.cloud.radvd_prefix
"""

EXAMPLES = r"""
- name: Tenant network 100 over multicast on a hypervisor
  hardway.cloud.vxlan_network:
    vni: 100
    device: eth0
    persist: true

- name: The same network on the edge host, its router
  hardway.cloud.vxlan_network:
    vni: 100
    device: eth0
    addresses: ["2001:db8:100::1/64"]
    persist: true

- name: The seed's layout, an explicit group
  hardway.cloud.vxlan_network:
    vni: 100
    device: eth0
    group: ff05::100

- name: Unicast peers where the underlay has no multicast
  hardway.cloud.vxlan_network:
    vni: 200
    local: 2001:db8::11
    remotes: [2001:db8::12, 2001:db8::20]

- name: Remove the network (refused while VMs are attached)
  hardway.cloud.vxlan_network:
    vni: 200
    state: absent
    persist: true
"""

RETURN = r"""
bridge:
  description: The bridge as it is after the run (empty when absent).
  returned: always
  type: dict
  sample: {name: br-vni100, mtu: 1430, addresses: ["2001:db8:100::1/64"], accept_ra: false, up: true}
vxlan:
  description: The VXLAN device as it is after the run (empty when absent).
  returned: always
  type: dict
  sample: {name: vxlan100, vni: 100, group: "ff05::e000:0:64", remotes: [], local: null, device: eth0,
           port: 4789, ttl: 5, learning: true, mtu: 1430, master: br-vni100, up: true}
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create_bridge br-vni100", "create_vxlan vxlan100", "set_master br-vni100"]
files:
  description: The systemd-networkd files of this network (with I(persist)).
  returned: always
  type: list
  elements: str
"""

import errno
import os
import re

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.hardway.cloud.plugins.module_utils import vxlan as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import HardwayModule, ModuleError, ParameterError
from ansible_collections.hardway.cloud.plugins.module_utils.config_file import ConfigFile

try:
    from pyroute2 import IPRoute, netns as pyroute2_netns
    from pyroute2.netlink.exceptions import NetlinkError
    HAS_PYROUTE2 = True
except ImportError:
    HAS_PYROUTE2 = False

    class NetlinkError(Exception):
        pass

IFF_UP = 0x1
IFA_F_PERMANENT = 0x80
AF_BRIDGE = 7
ZERO_MAC = "00:00:00:00:00:00"
NETIF_LINKS = "/run/systemd/netif/links"


class Netlink(object):
    """The kernel's view of one tenant network, read and changed by netlink."""

    def __init__(self):
        self.ipr = IPRoute()

    def close(self):
        self.ipr.close()

    def index(self, name):
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def link(self, name):
        index = self.index(name)
        return self.ipr.get_links(index)[0] if index is not None else None

    def name(self, index):
        if not index:
            return None
        links = self.ipr.get_links(index)
        return links[0].get_attr("IFLA_IFNAME") if links else None

    @staticmethod
    def kind(link):
        info = link.get_attr("IFLA_LINKINFO")
        return info.get_attr("IFLA_INFO_KIND") if info else None

    def owned_link(self, name, kind, parameter):
        """The link named ``name`` (None if missing); it must be of ``kind``."""
        link = self.link(name)
        if link is not None and self.kind(link) != kind:
            raise ParameterError(parameter, "%s exists and is a %s device, not a %s device"
                                 % (name, self.kind(link) or "plain", kind))
        return link

    def read(self, want):
        return {"bridge": self.read_bridge(want["bridge"]["name"]), "vxlan": self.read_vxlan(want["vxlan"]["name"])}

    def read_bridge(self, name):
        link = self.owned_link(name, "bridge", "bridge")
        if link is None:
            return None
        addresses = []
        for msg in self.ipr.get_addr(index=link["index"]):
            flags = msg.get_attr("IFA_FLAGS")
            flags = msg["flags"] if flags is None else flags
            address = msg.get_attr("IFA_ADDRESS")
            if not flags & IFA_F_PERMANENT or address.lower().startswith("fe80:"):
                continue
            addresses.append(logic.check_interface_address("%s/%d" % (address, msg["prefixlen"])))
        return {"name": name, "mtu": link.get_attr("IFLA_MTU"), "addresses": sorted(addresses),
                "accept_ra": int(_read_sysctl(name, "accept_ra") or 0) > 0, "up": bool(link["flags"] & IFF_UP)}

    def read_vxlan(self, name):
        link = self.owned_link(name, "vxlan", "name")
        if link is None:
            return None
        data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        group = data.get_attr("IFLA_VXLAN_GROUP6") or data.get_attr("IFLA_VXLAN_GROUP")
        group = group if group and group not in ("::", "0.0.0.0") else None
        local = data.get_attr("IFLA_VXLAN_LOCAL6") or data.get_attr("IFLA_VXLAN_LOCAL")
        local = local if local and local not in ("::", "0.0.0.0") else None
        remotes = []
        if group is None:
            for entry in self.ipr.fdb("dump", ifindex=link["index"]):
                if entry.get_attr("NDA_LLADDR") == ZERO_MAC and entry.get_attr("NDA_DST"):
                    remotes.append(entry.get_attr("NDA_DST"))
        return {"name": name, "vni": data.get_attr("IFLA_VXLAN_ID"), "group": group, "remotes": sorted(remotes),
                "remotes_mode": group is None, "local": local, "device": self.name(data.get_attr("IFLA_VXLAN_LINK")),
                "port": data.get_attr("IFLA_VXLAN_PORT"), "ttl": data.get_attr("IFLA_VXLAN_TTL"),
                "learning": bool(data.get_attr("IFLA_VXLAN_LEARNING")), "mtu": link.get_attr("IFLA_MTU"),
                "master": self.name(link.get_attr("IFLA_MASTER")), "up": bool(link["flags"] & IFF_UP)}

    def ports(self, bridge, exclude):
        index = self.index(bridge)
        if index is None:
            return []
        return sorted(link.get_attr("IFLA_IFNAME") for link in self.ipr.get_links()
                      if link.get_attr("IFLA_MASTER") == index and link.get_attr("IFLA_IFNAME") != exclude)

    def apply(self, action, want):
        verb, arg = action
        bridge, vxlan = want["bridge"], want["vxlan"]
        if verb == "create_bridge":
            self.ipr.link("add", ifname=bridge["name"], kind="bridge", mtu=bridge["mtu"])
        elif verb == "set_bridge_mtu":
            self.ipr.link("set", index=self.index(bridge["name"]), mtu=arg)
        elif verb == "set_accept_ra":
            _write_sysctl(bridge["name"], "accept_ra", "1" if arg else "0")
        elif verb in ("add_address", "del_address"):
            address, prefixlen = arg.split("/")
            self.ipr.addr("add" if verb == "add_address" else "del", index=self.index(bridge["name"]),
                          address=address, prefixlen=int(prefixlen))
        elif verb in ("create_vxlan", "recreate_vxlan"):
            index = self.index(vxlan["name"])
            if index is not None:
                self.ipr.link("del", index=index)
            self.ipr.link("add", **self._vxlan_attributes(vxlan))
        elif verb == "set_vxlan_mtu":
            self.ipr.link("set", index=self.index(vxlan["name"]), mtu=arg)
        elif verb == "set_master":
            self.ipr.link("set", index=self.index(vxlan["name"]), master=self.index(arg))
        elif verb in ("add_remote", "del_remote"):
            self.ipr.fdb("append" if verb == "add_remote" else "del", ifindex=self.index(vxlan["name"]),
                         lladdr=ZERO_MAC, dst=arg)
        elif verb in ("up_vxlan", "up_bridge"):
            self.ipr.link("set", index=self.index(arg), state="up")
        else:  # pragma: no cover - plan() produces only the verbs above
            raise ModuleError("unknown action %s" % verb)

    def _vxlan_attributes(self, vxlan):
        attrs = {"ifname": vxlan["name"], "kind": "vxlan", "vxlan_id": vxlan["vni"], "vxlan_port": vxlan["port"],
                 "vxlan_ttl": vxlan["ttl"], "vxlan_learning": 1 if vxlan["learning"] else 0}
        six = vxlan["group"] is not None or ":" in (vxlan["local"] or "") or any(":" in r for r in vxlan["remotes"])
        if vxlan["group"]:
            attrs["vxlan_group6"] = vxlan["group"]
        if vxlan["local"]:
            attrs["vxlan_local6" if six else "vxlan_local"] = vxlan["local"]
        if vxlan["device"]:
            attrs["vxlan_link"] = self.index(vxlan["device"])
        return attrs

    def delete(self, name):
        index = self.index(name)
        if index is None:
            return False
        self.ipr.link("del", index=index)
        return True


def _sysctl_path(ifname, key):
    return "/proc/sys/net/ipv6/conf/%s/%s" % (ifname, key)


def _read_sysctl(ifname, key):
    try:
        with open(_sysctl_path(ifname, key)) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _write_sysctl(ifname, key, value):
    with open(_sysctl_path(ifname, key), "w") as handle:
        handle.write(value)


def underlay_network_file(ifindex):
    """The .network file systemd-networkd applies to a link, or None."""
    try:
        with open(os.path.join(NETIF_LINKS, str(ifindex))) as handle:
            for line in handle:
                if line.startswith("NETWORK_FILE="):
                    return line.split("=", 1)[1].strip() or None
    except OSError:
        return None
    return None


def existing_files(vxlan_name, bridge_name):
    names = []
    if os.path.isdir(logic.NETWORKD_DIR):
        for entry in os.listdir(logic.NETWORKD_DIR):
            path = os.path.join(logic.NETWORKD_DIR, entry)
            if entry.endswith(".network.d") and os.path.isdir(path):
                names.extend("%s/%s" % (entry, sub) for sub in os.listdir(path))
            else:
                names.append(entry)
    return logic.owned_files(vxlan_name, bridge_name, names)


class VxlanNetwork(HardwayModule):
    argument_spec = dict(
        vni=dict(type="int", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        bridge=dict(type="str"),
        name=dict(type="str"),
        device=dict(type="str"),
        local=dict(type="str"),
        group=dict(type="str"),
        remotes=dict(type="list", elements="str"),
        dstport=dict(type="int", default=4789),
        ttl=dict(type="int", default=5),
        mtu=dict(type="int"),
        addresses=dict(type="list", elements="str", default=[]),
        accept_ra=dict(type="bool", default=False),
        netns=dict(type="str"),
        persist=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
    )
    module_kwargs = dict(mutually_exclusive=[("group", "remotes"), ("netns", "persist")])

    def run(self):
        if not HAS_PYROUTE2:
            self.module.fail_json(msg=missing_required_lib("pyroute2 (Debian package python3-pyroute2)"))
        params = self.params
        vni = logic.check_vni(params["vni"])
        if params["netns"]:
            if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z", params["netns"]):
                raise ParameterError("netns", "%r is not a network namespace name" % (params["netns"],))
            if not os.path.exists("/run/netns/%s" % params["netns"]):
                raise ParameterError("netns", "there is no network namespace named %s" % params["netns"])
            pyroute2_netns.setns(params["netns"], flags=0)
        self.netlink = Netlink()
        try:
            self.result.update(actions=[], files=[], bridge={}, vxlan={})
            try:
                if params["state"] == "absent":
                    self.absent(vni)
                else:
                    self.present()
            except NetlinkError as exc:
                raise ModuleError("netlink refused a change: %s" % _netlink_message(exc))
        finally:
            self.netlink.close()

    def underlay(self):
        device = self.params["device"]
        if device is None:
            return None
        logic.check_ifname("device", device)
        link = self.netlink.link(device)
        if link is None:
            where = " in network namespace %s" % self.params["netns"] if self.params["netns"] else ""
            raise ParameterError("device", "there is no interface named %s%s" % (device, where))
        return link

    def present(self):
        underlay = self.underlay()
        want = logic.wanted(self.params, underlay.get_attr("IFLA_MTU") if underlay is not None else None)
        actual = self.netlink.read(want)
        actions = logic.plan(actual, want)

        files_before, files_after = {}, {}
        if self.params["persist"]:
            network_file = underlay_network_file(underlay["index"]) if underlay is not None else None
            files_after = logic.networkd_files(want, network_file)
            for path in existing_files(want["vxlan"]["name"], want["bridge"]["name"]):
                files_before[path] = ConfigFile(path).read()
        file_changes = sorted(path for path in set(files_before) | set(files_after)
                              if files_before.get(path) != files_after.get(path))

        self.result["actions"] = ["%s %s" % action for action in actions] + \
            ["%s %s" % ("write" if path in files_after else "remove", path) for path in file_changes]
        self.result["files"] = sorted(files_after)
        self.result["changed"] = bool(actions or file_changes)
        before, after = logic.view(actual), logic.view(want)
        if files_before or files_after:
            before["files"], after["files"] = files_before, files_after
        self.set_diff(before, after)
        self.result.update(logic.view(want) if self.check_mode else logic.view(actual))
        if self.check_mode:
            return

        for action in actions:
            self.netlink.apply(action, want)
        for path in file_changes:
            config = ConfigFile(path, mode=0o644)
            if path in files_after:
                config.write(files_after[path])
            else:
                config.remove()
        actual = self.netlink.read(want)
        self.result.update(logic.view(actual))
        left = logic.plan(actual, want)
        if left:
            raise ModuleError("the kernel did not take the change: still to do %s" % ", ".join("%s %s" % a for a in left))

    def absent(self, vni):
        bridge = logic.check_ifname("bridge", self.params["bridge"] or logic.bridge_name(vni))
        vxlan = logic.check_ifname("name", self.params["name"] or logic.vxlan_name(vni))
        before = {"bridge": self.netlink.read_bridge(bridge), "vxlan": self.netlink.read_vxlan(vxlan)}
        ports = self.netlink.ports(bridge, exclude=vxlan) if before["bridge"] else []
        if ports and not self.params["force"]:
            raise ParameterError("state", "bridge %s still has ports %s (VMs attached?); detach them first or set "
                                          "force: true" % (bridge, ", ".join(ports)))
        actions = []
        if before["vxlan"] is not None:
            actions.append("delete %s" % vxlan)
        if before["bridge"] is not None:
            actions.append("delete %s" % bridge)
        files = existing_files(vxlan, bridge) if self.params["persist"] else []
        actions += ["remove %s" % path for path in files]
        self.result["actions"] = actions
        self.result["changed"] = bool(actions)
        diff_before = logic.view(before)
        if files:
            diff_before["files"] = dict((path, ConfigFile(path).read()) for path in files)
        self.set_diff(diff_before, {})
        if self.check_mode:
            return
        self.netlink.delete(vxlan)
        self.netlink.delete(bridge)
        for path in files:
            ConfigFile(path).remove()


def _netlink_message(exc):
    code = exc.code if hasattr(exc, "code") else None
    if code:
        return "%s (%s)" % (os.strerror(code), errno.errorcode.get(code, code))
    return str(exc)


def main():
    VxlanNetwork.main()


if __name__ == "__main__":
    main()
