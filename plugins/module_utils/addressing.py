# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Address arithmetic shared by modules and filters: the n-th address of a
prefix (a network's gateway) and the SLAAC (modified EUI-64) address of a MAC
in a prefix, which is how the cloud knows a VM's address without asking it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import re

MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
# the derived MACs: this first octet (locally administered, unicast), then
# five octets of SHA-256 over "NAME/INDEX"
MAC_FIRST_OCTET = 0x02


def prefix_address(prefix, index=1, with_prefixlen=False):
    network = ipaddress.ip_network(prefix, strict=True)
    if not 0 <= index < network.num_addresses:
        raise ValueError("%s has no address number %d" % (network, index))
    address = network[index]
    return "%s/%d" % (address, network.prefixlen) if with_prefixlen else str(address)


def eui64_address(prefix, mac):
    if not isinstance(mac, str) or not MAC.match(mac):
        raise ValueError("%r is not a MAC address (six colon-separated hex octets)" % (mac,))
    network = ipaddress.IPv6Network(prefix, strict=True)
    if network.prefixlen != 64:
        raise ValueError("%s: SLAAC addresses exist only in /64 prefixes" % network)
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02  # the universal/local bit is inverted in modified EUI-64
    interface_id = int.from_bytes(bytes(octets[:3] + [0xFF, 0xFE] + octets[3:]), "big")
    return str(network[interface_id])


def derived_mac(name, index):
    """The MAC of NIC ``index`` of instance ``name`` when none is given: the
    same on every run and every host, locally administered and unicast."""
    digest = hashlib.sha256(("%s/%d" % (name, index)).encode("utf-8")).digest()
    return ":".join("%02x" % octet for octet in bytearray([MAC_FIRST_OCTET]) + bytearray(digest[:5]))
