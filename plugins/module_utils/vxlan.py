# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of a tenant network (a VXLAN device enslaved to a Linux bridge):
names and defaults derived from the VNI, input validation, the plan that turns
the actual state into the wanted one, and the systemd-networkd files that bring
the same state back after a reboot. No I/O here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

VNI_MIN, VNI_MAX = 1, 16777215
# outer IPv6 header 40 + UDP 8 + VXLAN 8 + the inner Ethernet header 14
VXLAN6_OVERHEAD = 70
# Derived multicast groups: ff05::e000:0:0/96 plus the VNI. Every VNI gets its
# own group, and because the VNI sits in the low 32 bits (the bits IPv6 maps
# to the 33:33:xx:xx:xx:xx Ethernet address) every group also gets its own
# multicast MAC, so NICs and snooping switches filter per network.
GROUP_BASE = ipaddress.IPv6Address("ff05::e000:0:0")
IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
NETWORKD_DIR = "/etc/systemd/network"
FILE_PREFIX = "60-hardway-"

# attributes of the VXLAN device the kernel cannot change in place
VXLAN_RECREATE = ("vni", "group", "remotes_mode", "local", "device", "port", "ttl", "learning")


def bridge_name(vni):
    return "br-vni%d" % vni


def vxlan_name(vni):
    return "vxlan%d" % vni


def default_group(vni):
    return str(GROUP_BASE + vni)


def default_mtu(underlay_mtu):
    return underlay_mtu - VXLAN6_OVERHEAD


def check_ifname(parameter, name):
    if not isinstance(name, str) or not IFNAME.match(name):
        raise ParameterError(parameter, "%r is not a usable interface name (1-15 characters of "
                                        "letters, digits, '_', '.', '-', starting with a letter or digit)" % (name,))
    return name


def check_vni(vni):
    if not isinstance(vni, int) or isinstance(vni, bool) or not VNI_MIN <= vni <= VNI_MAX:
        raise ParameterError("vni", "%r is not a VXLAN network identifier (%d..%d)" % (vni, VNI_MIN, VNI_MAX))
    return vni


def check_group(group):
    try:
        address = ipaddress.IPv6Address(group)
    except ValueError:
        raise ParameterError("group", "%r is not an IPv6 address" % (group,))
    if not address.is_multicast:
        raise ParameterError("group", "%s is not an IPv6 multicast address (ff00::/8)" % address)
    if (int(address) >> 112) & 0xF in (0, 1, 2):
        raise ParameterError("group", "%s has interface- or link-local scope; use site scope (ff05::/16) or wider "
                                      "so the group can cross the underlay" % address)
    return str(address)


def check_unicast(parameter, value):
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ParameterError(parameter, "%r is not an IP address" % (value,))
    if address.is_multicast or address.is_unspecified:
        raise ParameterError(parameter, "%s is not a unicast address" % address)
    return address


def check_interface_address(value, parameter="addresses"):
    try:
        interface = ipaddress.ip_interface(value)
    except ValueError:
        raise ParameterError(parameter, "%r is not an address with a prefix length (e.g. 2001:db8:100::1/64)"
                                        % (value,))
    if "/" not in str(value):
        raise ParameterError(parameter, "%r needs a prefix length (e.g. 2001:db8:100::1/64)" % (value,))
    if interface.ip.is_multicast or interface.ip.is_unspecified or interface.ip.is_loopback:
        raise ParameterError(parameter, "%s is not a unicast address" % interface.ip)
    if interface.version == 6 and interface.ip.is_link_local:
        raise ParameterError(parameter, "%s is link-local; the kernel manages link-local addresses" % interface.ip)
    return interface.with_prefixlen


def wanted(params, underlay_mtu):
    """The wanted state from module parameters (already type-checked by
    Ansible); raises ParameterError on any value that makes no sense."""
    vni = check_vni(params["vni"])
    bridge = check_ifname("bridge", bridge_name(vni) if params.get("bridge") is None else params["bridge"])
    vxlan = check_ifname("name", vxlan_name(vni) if params.get("name") is None else params["name"])
    if bridge == vxlan:
        raise ParameterError("bridge", "the bridge and the VXLAN device cannot both be named %s" % bridge)
    device = params.get("device")
    if device is not None:
        check_ifname("device", device)
    remotes = params.get("remotes")
    if remotes is not None:
        if params.get("group") is not None:
            raise ParameterError("remotes", "give either a multicast group or unicast remotes, not both")
        if not remotes:
            raise ParameterError("remotes", "needs at least one peer address")
        peers = sorted(set(check_unicast("remotes[%d]" % index, peer) for index, peer in enumerate(remotes)),
                       key=lambda a: (a.version, a))
        remotes = [str(peer) for peer in peers]
        group = None
    else:
        group = check_group(params.get("group") or default_group(vni))
        if device is None:
            raise ParameterError("device", "a multicast group needs the underlay device the group is joined on")
    local = params.get("local")
    if local is not None:
        local_ip = check_unicast("local", local)
        families = set([local_ip.version] + [ipaddress.ip_address(peer).version for peer in remotes or []])
        if group is not None:
            families.add(6)
        if len(families) > 1:
            raise ParameterError("local", "%s and the remote/group addresses are not of one address family" % local)
        local = str(local_ip)
    elif remotes and len(set(ipaddress.ip_address(peer).version for peer in remotes)) > 1:
        raise ParameterError("remotes", "all peers must be of one address family")
    port = params.get("dstport", 4789)
    if not 1 <= port <= 65535:
        raise ParameterError("dstport", "%r is not a UDP port (1..65535)" % (port,))
    ttl = params.get("ttl", 5)
    if not 1 <= ttl <= 255:
        raise ParameterError("ttl", "%r is not a hop limit (1..255)" % (ttl,))
    mtu = params.get("mtu")
    if mtu is None:
        if underlay_mtu is None:
            mtu = 1500 - VXLAN6_OVERHEAD
        else:
            mtu = default_mtu(underlay_mtu)
    if not 1280 <= mtu <= 65535 - VXLAN6_OVERHEAD:
        raise ParameterError("mtu", "%r is out of range (1280, the IPv6 minimum, .. %d)" % (mtu, 65535 - VXLAN6_OVERHEAD))
    if underlay_mtu is not None and mtu > underlay_mtu - VXLAN6_OVERHEAD:
        raise ParameterError("mtu", "%d does not fit into the underlay's MTU %d minus the VXLAN overhead of %d bytes"
                                    % (mtu, underlay_mtu, VXLAN6_OVERHEAD))
    addresses = sorted(set(check_interface_address(address, "addresses[%d]" % index)
                           for index, address in enumerate(params.get("addresses") or [])))
    return {
        "bridge": {"name": bridge, "mtu": mtu, "addresses": addresses,
                   "accept_ra": bool(params.get("accept_ra")), "up": True},
        "vxlan": {"name": vxlan, "vni": vni, "group": group, "remotes": remotes or [],
                  "remotes_mode": remotes is not None, "local": local, "device": device, "port": port,
                  "ttl": ttl, "learning": remotes is None, "mtu": mtu, "master": bridge, "up": True},
    }


def plan(actual, want):
    """Actions turning ``actual`` into ``want`` (each a tuple, applied in order).

    ``actual`` has the shape of ``wanted()``; a missing device is None. The
    VXLAN device's multicast-ness is ``remotes_mode``."""
    actions = []
    bridge, want_bridge = actual.get("bridge"), want["bridge"]
    if bridge is None:
        actions.append(("create_bridge", want_bridge["name"]))
        bridge = {"mtu": None, "addresses": [], "accept_ra": None, "up": False}
    if bridge["mtu"] != want_bridge["mtu"]:
        actions.append(("set_bridge_mtu", want_bridge["mtu"]))
    if bridge["accept_ra"] != want_bridge["accept_ra"]:
        actions.append(("set_accept_ra", want_bridge["accept_ra"]))
    actions += _list_changes(bridge["addresses"], want_bridge["addresses"], "add_address", "del_address")

    vxlan, want_vxlan = actual.get("vxlan"), want["vxlan"]
    if vxlan is not None:
        drift = [key for key in VXLAN_RECREATE if vxlan.get(key) != want_vxlan[key]]
        if drift:
            actions.append(("recreate_vxlan", ", ".join(drift)))
            vxlan = None
    if vxlan is None:
        if not any(a[0] == "recreate_vxlan" for a in actions):
            actions.append(("create_vxlan", want_vxlan["name"]))
        vxlan = {"mtu": None, "master": None, "remotes": [], "up": False}
    if vxlan["mtu"] != want_vxlan["mtu"]:
        actions.append(("set_vxlan_mtu", want_vxlan["mtu"]))
    if vxlan["master"] != want_vxlan["master"]:
        actions.append(("set_master", want_vxlan["master"]))
    actions += _list_changes(vxlan["remotes"], want_vxlan["remotes"], "add_remote", "del_remote")
    if not vxlan["up"]:
        actions.append(("up_vxlan", want_vxlan["name"]))
    if not bridge["up"]:
        actions.append(("up_bridge", want_bridge["name"]))
    return actions


def _list_changes(actual, wanted, add, delete):
    return [(add, item) for item in wanted if item not in actual] + \
        [(delete, item) for item in actual if item not in wanted]


def view(state):
    """What the module shows in diff and returns: the owned attributes only."""
    if state is None:
        return {}
    shown = {}
    if state.get("bridge") is not None:
        shown["bridge"] = dict(state["bridge"])
    if state.get("vxlan") is not None:
        vxlan = dict(state["vxlan"])
        vxlan.pop("remotes_mode", None)
        shown["vxlan"] = vxlan
    return shown


def _yes(value):
    return "yes" if value else "no"


def networkd_files(want, underlay_network_file=None):
    """The systemd-networkd files that recreate ``want`` at boot, as
    {path: content}. ``underlay_network_file`` is the .network file networkd
    applies to the underlay device (a drop-in there attaches the VXLAN)."""
    bridge, vxlan = want["bridge"], want["vxlan"]
    header = "# Managed by hardway.cloud.vxlan_network (VNI %d); local changes are overwritten.\n" % vxlan["vni"]
    files = {}
    files["%s/%s%s.netdev" % (NETWORKD_DIR, FILE_PREFIX, bridge["name"])] = (
        header + "[NetDev]\nName=%s\nKind=bridge\nMTUBytes=%d\n" % (bridge["name"], bridge["mtu"]))
    lines = [header, "[Match]\nName=%s\n\n[Network]\n" % bridge["name"]]
    lines += ["Address=%s\n" % address for address in bridge["addresses"]]
    lines.append("LinkLocalAddressing=ipv6\nIPv6AcceptRA=%s\nConfigureWithoutCarrier=yes\n" % _yes(bridge["accept_ra"]))
    files["%s/%s%s.network" % (NETWORKD_DIR, FILE_PREFIX, bridge["name"])] = "".join(lines)

    netdev = [header, "[NetDev]\nName=%s\nKind=vxlan\nMTUBytes=%d\n\n[VXLAN]\nVNI=%d\n"
              % (vxlan["name"], vxlan["mtu"], vxlan["vni"])]
    if vxlan["group"]:
        netdev.append("Group=%s\n" % vxlan["group"])
    if vxlan["local"]:
        netdev.append("Local=%s\n" % vxlan["local"])
    netdev.append("DestinationPort=%d\nTTL=%d\nMacLearning=%s\n" % (vxlan["port"], vxlan["ttl"], _yes(vxlan["learning"])))
    if not vxlan["device"]:
        netdev.append("Independent=yes\n")
    files["%s/%s%s.netdev" % (NETWORKD_DIR, FILE_PREFIX, vxlan["name"])] = "".join(netdev)
    network = [header, "[Match]\nName=%s\n\n[Network]\nBridge=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
               "ConfigureWithoutCarrier=yes\n" % (vxlan["name"], bridge["name"])]
    for peer in vxlan["remotes"]:
        network.append("\n[BridgeFDB]\nMACAddress=00:00:00:00:00:00\nDestination=%s\n" % peer)
    files["%s/%s%s.network" % (NETWORKD_DIR, FILE_PREFIX, vxlan["name"])] = "".join(network)
    if vxlan["device"]:
        if not underlay_network_file:
            raise ParameterError("persist", "the underlay device %s is not managed by systemd-networkd, so a VXLAN "
                                            "bound to it cannot be brought back at boot; manage the underlay with "
                                            "networkd or set persist: false" % vxlan["device"])
        dropin = "%s/%s.d/%s%s.conf" % (NETWORKD_DIR, underlay_network_file.rsplit("/", 1)[-1], FILE_PREFIX,
                                        vxlan["name"])
        files[dropin] = header + "[Network]\nVXLAN=%s\n" % vxlan["name"]
    return files


def owned_files(vxlan, bridge, names):
    """Of the file ``names`` found under the networkd directory (relative,
    drop-ins as 'x.network.d/y.conf'), the ones this network owns."""
    mine = set("%s%s.%s" % (FILE_PREFIX, name, ext) for name in (vxlan, bridge) for ext in ("netdev", "network"))
    dropin = "%s%s.conf" % (FILE_PREFIX, vxlan)
    return sorted("%s/%s" % (NETWORKD_DIR, n) for n in names
                  if n in mine or (n.endswith("/" + dropin) and n.split("/")[0].endswith(".network.d")))
