# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the ``cluster`` inventory: the hypervisors of its
configuration, and the tenant VMs (instance records) made out of what libvirt
says about the domains of a hypervisor (their XML and state). A domain is a
tenant VM when its XML has the collection's metadata element (written by
kvm_instance's ``metadata`` option), whose JSON names its tenant, instance,
flavor, image and networks. No I/O here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
from xml.etree import ElementTree

from ansible_collections.hardway.cloud.plugins.module_utils.addressing import eui64_address
from ansible_collections.hardway.cloud.plugins.module_utils.libvirt_domain import METADATA_NS, owned

# virDomainState as virsh names the states (virsh domstate)
STATES = {
    0: "no state",
    1: "running",
    2: "idle",
    3: "paused",
    4: "in shutdown",
    5: "shut off",
    6: "crashed",
    7: "pmsuspended",
}
# the prefix of every host variable the inventory sets (besides ansible_host);
# the cloud's own data (hardway_networks, hardway_instances, ...) has no vm_
VAR_PREFIX = "hardway_vm_"
# the group of every tenant VM
INSTANCES_GROUP = "hardway_instances"
# what an entry of the hypervisors option may hold
HYPERVISOR_KEYS = ("name", "uri", "timeout")
# the version of the metadata's JSON this code reads (its "version" key; none is 1)
METADATA_VERSION = 1
# the metadata's keys with host variables of their own (or none: version); the others are "extra"
METADATA_KEYS = ("version", "tenant", "instance", "flavor", "image", "networks")
# libvirt writes the domain's name and uuid first, before any metadata
_NAME = re.compile(r"<name>([^<]*)</name>")
_UUID = re.compile(r"<uuid>([0-9a-fA-F-]+)</uuid>")
# the references libvirt writes in text (xml.sax.saxutils would cost the
# inventory the import of urllib.request, for a name in a message)
_REFERENCE = re.compile(r"&(lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);")
_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


class DomainError(ValueError):
    """The domain has the collection's metadata element, but it (or its XML)
    is unusable."""


def state_name(code):
    """virsh's name of a virDomainState number ("unknown N" for others)."""
    try:
        return STATES[int(code)]
    except (KeyError, TypeError, ValueError):
        return "unknown %s" % (code,)


def uri_host(uri):
    """The host part of a libvirt URI, without user, port and IPv6 brackets;
    None for a URI without one (test:///file.xml, qemu:///system)."""
    rest = uri.split("://", 1)[1] if "://" in uri else ""
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host or None


def _positive_number(where, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("%s: %r is not a number of seconds more than 0" % (where, value))
    return value


def hypervisors(entries, timeout):
    """The hypervisors of the ``hypervisors`` option, as dicts with uri, name
    (None when libvirt has to tell it: a URI without a host) and timeout.
    Raises ValueError naming the entry (hypervisors[1].uri) on bad input."""
    if not isinstance(entries, list) or not entries:
        raise ValueError("hypervisors: must be a list of libvirt URIs or {name, uri} dicts, and not empty")
    timeout = _positive_number("timeout", timeout)
    result, names, uris = [], {}, {}
    for index, entry in enumerate(entries):
        where = "hypervisors[%d]" % index
        if isinstance(entry, str):
            entry = {"uri": entry}
        if not isinstance(entry, dict):
            raise ValueError("%s: %r is neither a libvirt URI nor a dict with uri and name" % (where, entry))
        unknown = sorted(set(entry) - set(HYPERVISOR_KEYS))
        if unknown:
            raise ValueError("%s.%s: is not a key of a hypervisor entry (%s)"
                             % (where, unknown[0], ", ".join(HYPERVISOR_KEYS)))
        uri = entry.get("uri")
        if not isinstance(uri, str) or "://" not in uri or any(ord(char) < 32 for char in uri):
            raise ValueError("%s.uri: %r is not a libvirt URI (like qemu+ssh://root@hv1/system)" % (where, uri))
        name = entry.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError("%s.name: %r is not a hypervisor name" % (where, name))
        name = name if name is not None else uri_host(uri)
        if uri in uris:
            raise ValueError("%s.uri: %s is also the URI of hypervisors[%d]" % (where, uri, uris[uri]))
        uris[uri] = index
        if name is not None and name in names:
            raise ValueError("%s: the name %s is also the name of hypervisors[%d]; give the entries a name each"
                             % (where, name, names[name]))
        if name is not None:
            names[name] = index
        each = timeout if entry.get("timeout") is None else _positive_number(where + ".timeout", entry["timeout"])
        result.append({"name": name, "uri": uri, "timeout": each})
    return result


def _networks(metadata, problems):
    """The metadata's networks as [{name, prefix}], tolerating names alone."""
    value = metadata.get("networks")
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append("metadata networks is not a list; ignored")
        return []
    found = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            problems.append("metadata networks[%d] is not a dict with name and prefix; ignored" % index)
            item = {}
        found.append({"name": item.get("name"), "prefix": item.get("prefix")})
    return found


def _unescape(text):
    def character(match):
        reference = match.group(1)
        if not reference.startswith("#"):
            return _ENTITIES[reference]
        try:
            return chr(int(reference[2:], 16) if reference.startswith("#x") else int(reference[1:]))
        except (ValueError, OverflowError):
            return match.group(0)  # no character: left as written
    return _REFERENCE.sub(character, text)


def domain_name(xml):
    """The name of a domain from its XML text, without parsing it (for messages)."""
    match = _NAME.search(xml)
    return _unescape(match.group(1)) if match else "?"


def instance(xml, state=None):
    """The instance record of a domain from its XML and state number: None
    when the domain has no metadata of the collection (it is not a tenant VM).
    Raises DomainError when the metadata is not a JSON object (or the XML is
    not libvirt's).

    The record: name, uuid, state, tenant, instance, flavor, image, extra
    (the metadata's other keys), vcpus, memory (MiB), networks (one per bridge
    NIC, in document order: name, prefix, bridge, mac, address), macs,
    addresses, address (the first NIC's that has one, else None), volumes
    (writable disks: path or pool/image), seed (the read-only disk's source)
    and problems (what was odd but not fatal, for warnings)."""
    if METADATA_NS not in xml:
        return None
    try:
        part = owned(xml)
    except ElementTree.ParseError as exc:
        raise DomainError("its XML does not parse: %s" % exc)
    except (KeyError, TypeError, ValueError) as exc:
        raise DomainError("its XML is not what libvirt writes: %s" % exc)
    metadata = part["metadata"]
    if metadata is None:
        return None
    if isinstance(metadata, dict) and list(metadata) == ["_unreadable"]:
        # owned() keeps the text of metadata that is not JSON; the error is the point here
        try:
            metadata = json.loads(metadata["_unreadable"] or "")
        except ValueError as exc:
            raise DomainError("its hardway metadata is not JSON: %s" % exc)
    if not isinstance(metadata, dict):
        raise DomainError("its hardway metadata is not a JSON object but %s" % type(metadata).__name__)
    problems = []
    if metadata.get("version", METADATA_VERSION) != METADATA_VERSION:
        problems.append("its hardway metadata has version %r, read as version %d"
                        % (metadata["version"], METADATA_VERSION))
    networks = _networks(metadata, problems)
    nics = []
    for index, interface in enumerate(part["interfaces"]):
        network = networks[index] if index < len(networks) else {"name": None, "prefix": None}
        address = None
        if network["prefix"] is not None and interface["mac"]:
            try:
                address = eui64_address(network["prefix"], interface["mac"])
            except (ValueError, TypeError) as exc:
                problems.append("networks[%d].prefix: %s" % (index, exc))
        nics.append({"name": network["name"], "prefix": network["prefix"], "bridge": interface["bridge"],
                     "mac": interface["mac"], "address": address})
    volumes, seed = [], None
    for disk in part["disks"]:
        source = "%(pool)s/%(image)s" % disk["rbd"] if disk["rbd"] else disk["path"]
        if source is None:
            continue
        if not disk["readonly"]:
            volumes.append(source)
        elif seed is None:
            seed = source
    addresses = [nic["address"] for nic in nics if nic["address"]]
    uuid = _UUID.search(xml)
    return {
        "name": part["name"],
        "uuid": uuid.group(1) if uuid else None,
        "state": state_name(state) if state is not None else None,
        "tenant": metadata.get("tenant"),
        "instance": metadata.get("instance"),
        "flavor": metadata.get("flavor"),
        "image": metadata.get("image"),
        "extra": dict((key, value) for key, value in metadata.items() if key not in METADATA_KEYS),
        "vcpus": part["vcpus"],
        "memory": part["memory"],
        "networks": nics,
        "macs": [nic["mac"] for nic in nics if nic["mac"]],
        "addresses": addresses,
        "address": addresses[0] if addresses else None,
        "volumes": volumes,
        "seed": seed,
        "problems": problems,
    }


def instances(hypervisor, domains):
    """The instance records of the domains of ``hypervisor`` from
    [(xml, state)], each with its ``hypervisor``, and the warnings about
    domains left out or odd."""
    records, warnings = [], []
    for xml, state in domains:
        try:
            record = instance(xml, state)
        except DomainError as exc:
            warnings.append("domain %s on hypervisor %s is left out: %s" % (domain_name(xml), hypervisor, exc))
            continue
        if record is None:
            continue
        for problem in record.pop("problems"):
            warnings.append("domain %s on hypervisor %s: %s" % (record["name"], hypervisor, problem))
        record["hypervisor"] = hypervisor
        records.append(record)
    return records, warnings


def merge(results):
    """The inventory's instances from the records of each hypervisor (lists of
    records with their ``hypervisor``) in the order of the hypervisors option:
    of two domains with one name, the first is kept. Returns (records, warnings)."""
    kept, where, warnings = [], {}, []
    for records in results:
        for record in records:
            name = record["name"]
            if name in where:
                warnings.append("domain %s is on hypervisor %s and on %s: kept the one on %s"
                                % (name, where[name], record["hypervisor"], where[name]))
                continue
            where[name] = record["hypervisor"]
            kept.append(record)
    return kept, warnings


def hostvars(record):
    """The host variables of an instance record (before they are marked unsafe)."""
    found = {}
    if record.get("address"):
        found["ansible_host"] = record["address"]
    for key in ("tenant", "instance", "hypervisor", "state", "vcpus", "memory", "networks", "macs", "addresses",
                "volumes", "seed", "image", "flavor", "uuid", "extra"):
        found[VAR_PREFIX + key] = record.get(key)
    return found


def _group_part(value):
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def groups(record):
    """The names of the groups of an instance record, before sanitizing."""
    found = [INSTANCES_GROUP]
    if record.get("tenant") not in (None, ""):
        found.append("tenant_" + _group_part(record["tenant"]))
    for nic in record.get("networks") or []:
        if nic["name"] not in (None, ""):
            found.append("network_" + _group_part(nic["name"]))
    if record.get("hypervisor"):
        found.append("hypervisor_" + record["hypervisor"])
    if record.get("state"):
        found.append("state_" + record["state"])
    return list(dict.fromkeys(found))
