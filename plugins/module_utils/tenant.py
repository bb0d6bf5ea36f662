# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant part of the cloud's data (hardway_images, hardway_flavors,
hardway_instances) turned into what the modules are given: pure logic, shared
by the tenant role's filters and the edge role's frontends.

- ``instances`` checks the data and returns one record per instance: its
  flavor resolved, its volumes named, its NICs with MACs, bridges and SLAAC
  addresses, its seed's network-config and the metadata the inventory reads.
- ``placement`` puts every instance on a hypervisor: where it already is,
  else where the data says, else on the hypervisor with the most memory left.
- ``frontend_servers`` lists the backends of a frontend: the instances that
  publish on it, at their derived IPv6 addresses.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.hardway.cloud.plugins.module_utils.addressing import MAC, derived_mac, eui64_address
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError
from ansible_collections.hardway.cloud.plugins.module_utils.libvirt_domain import parse_memory
from ansible_collections.hardway.cloud.plugins.module_utils.units import parse_size

# An instance's name is its domain's name, its hostname and the stem of its
# volumes' names: a DNS label, which is safe in all three.
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
STATES = ("present", "running", "stopped", "absent")
INSTANCE_KEYS = ("name", "tenant", "state", "flavor", "image", "networks", "hypervisor", "user_data",
                 "ssh_authorized_keys", "publish", "delete_volumes", "apply")
IMAGE_KEYS = ("name", "source", "kernel", "initrd", "cmdline", "state")
FLAVOR_KEYS = ("vcpus", "memory", "disk")
PUBLISH_KEYS = ("frontend", "port", "network")
APPLY = ("live", "restart")
# names in the pool: an image's template and its snapshot, an instance's volumes
IMAGE_PREFIX = "image-"
SNAPSHOT = "base"
ROOT_SUFFIX = "-root"
SEED_SUFFIX = "-seed"
# the version of the JSON the tenant role writes into the domain's metadata
METADATA_VERSION = 1


def _where(kind, index, item, key=None):
    name = item.get("name") if isinstance(item, dict) else None
    head = "%s[%s]" % (kind, name if isinstance(name, str) and name else index)
    return head + ("." + key if key else "")


def _known_keys(where, item, keys):
    if not isinstance(item, dict):
        raise ParameterError(where, "must be a dict")
    unknown = sorted(set(item) - set(keys))
    if unknown:
        raise ParameterError(where + "." + unknown[0], "is not a key of this entry (%s)" % ", ".join(keys))


def flavors(value):
    """name -> {vcpus, memory (MiB), disk (bytes)}."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ParameterError("hardway_flavors", "must be a dict of flavor name to {vcpus, memory, disk}")
    result = {}
    for name, flavor in value.items():
        where = "hardway_flavors[%s]" % name
        _known_keys(where, flavor, FLAVOR_KEYS)
        missing = [key for key in FLAVOR_KEYS if flavor.get(key) is None]
        if missing:
            raise ParameterError(where + "." + missing[0], "is required")
        vcpus = flavor["vcpus"]
        if isinstance(vcpus, bool) or not isinstance(vcpus, int) or vcpus < 1:
            if not (isinstance(vcpus, str) and vcpus.isdigit() and int(vcpus) > 0):
                raise ParameterError(where + ".vcpus", "%r is not a number of vCPUs (1 or more)" % (vcpus,))
        result[str(name)] = {"vcpus": int(vcpus), "memory": parse_memory(flavor["memory"], where + ".memory"),
                             "disk": parse_size(where + ".disk", flavor["disk"])}
    return result


def images(value, pool, image_dir="/var/lib/hardway/images"):
    """name -> {rbd image, snapshot, clone source, source file, kernel boot,
    and the ceph_rbd_volume entries that import, keep and remove it}."""
    result = {}
    for index, image in enumerate(value or []):
        where = _where("hardway_images", index, image)
        _known_keys(where, image, IMAGE_KEYS)
        name = image.get("name")
        if not isinstance(name, str) or not LABEL.match(name):
            raise ParameterError(where + ".name", "%r is not an image name (lower-case letters, digits, '-')" % (name,))
        if name in result:
            raise ParameterError(where + ".name", "%s is given twice" % name)
        state = image.get("state", "present")
        if state not in ("present", "absent"):
            raise ParameterError(where + ".state", "%r is not one of present, absent" % (state,))
        for key in ("source", "kernel", "initrd"):
            path = image.get(key)
            if path is not None and (not isinstance(path, str) or not path.startswith("/")):
                raise ParameterError(where + "." + key, "%r is not an absolute path" % (path,))
        if state == "present" and not image.get("source"):
            raise ParameterError(where + ".source", "is required: the qcow2 or raw file to import")
        if image.get("initrd") and not image.get("kernel"):
            raise ParameterError(where + ".initrd", "needs a kernel")
        if image.get("cmdline") is not None and not image.get("kernel"):
            raise ParameterError(where + ".cmdline", "needs a kernel")
        rbd = IMAGE_PREFIX + name
        snapshots = [{"name": SNAPSHOT, "protected": True}]
        upload = "%s/%s/source" % (image_dir, name)
        result[name] = {"name": name, "state": state, "source": image.get("source"), "pool": pool,
                        "rbd": rbd, "snapshot": SNAPSHOT, "clone_source": "%s/%s@%s" % (pool, rbd, SNAPSHOT),
                        "kernel": image.get("kernel"), "initrd": image.get("initrd"),
                        "cmdline": image.get("cmdline"), "upload": upload,
                        "import_volume": {"name": rbd, "source": upload, "snapshots": snapshots},
                        "template_volume": {"name": rbd, "snapshots": snapshots},
                        "removed_volume": {"name": rbd}}
    return result


def _networks(value):
    result = {}
    for index, network in enumerate(value or []):
        if isinstance(network, dict) and isinstance(network.get("name"), str):
            result[network["name"]] = network
        else:
            raise ParameterError("hardway_networks[%d]" % index, "needs a name")
    return result


def bridge_of(network):
    """The bridge of a tenant network on every host (the network role's name)."""
    return network.get("bridge") or "br-vni%s" % network["vni"]


def _nics(where, name, value, networks):
    if not isinstance(value, list):
        raise ParameterError(where, "must be a list of network names (or {name, mac})")
    nics = []
    for index, entry in enumerate(value):
        at = "%s[%d]" % (where, index)
        if isinstance(entry, str):
            entry = {"name": entry}
        _known_keys(at, entry, ("name", "mac"))
        network = networks.get(entry.get("name"))
        if network is None:
            raise ParameterError(at, "%r is not a network of hardway_networks" % (entry.get("name"),))
        if network.get("state", "present") == "absent":
            raise ParameterError(at, "network %s is being removed (state: absent)" % network["name"])
        mac = entry.get("mac") or derived_mac(name, index)
        if not isinstance(mac, str) or not MAC.match(mac):
            raise ParameterError(at + ".mac", "%r is not a MAC address" % (mac,))
        mac = mac.lower()
        prefix = network.get("prefix")
        nics.append({"name": network["name"], "prefix": prefix, "bridge": bridge_of(network), "mac": mac,
                     "address": eui64_address(prefix, mac) if prefix else None})
    return nics


def network_config(nics):
    """The seed's network-config: every NIC by its MAC, addressed by SLAAC
    (cloud-init's ipv6_slaac), so the address is the EUI-64 one the cloud
    derives; no DHCP, no privacy addresses."""
    config = []
    for index, nic in enumerate(nics):
        config.append({"type": "physical", "name": "eth%d" % index, "mac_address": nic["mac"],
                       "subnets": [{"type": "ipv6_slaac"}] if nic["prefix"] else []})
    return {"version": 1, "config": config}


def _publish(where, value, nics):
    result = []
    for index, entry in enumerate(value or []):
        at = "%s[%d]" % (where, index)
        _known_keys(at, entry, PUBLISH_KEYS)
        if not isinstance(entry.get("frontend"), str) or not entry["frontend"]:
            raise ParameterError(at + ".frontend", "is required: the name of a frontend of hardway_frontends")
        port = entry.get("port")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ParameterError(at + ".port", "%r is not a port (1-65535)" % (port,))
        addressed = [nic for nic in nics if nic["address"]]
        if entry.get("network") is not None:
            addressed = [nic for nic in addressed if nic["name"] == entry["network"]]
        if not addressed:
            raise ParameterError(at + (".network" if entry.get("network") else ""),
                                 "the instance has no NIC with an address %s" % (
                                     "on " + entry["network"] if entry.get("network") else "(no network with a prefix)"))
        result.append({"frontend": entry["frontend"], "port": port, "address": addressed[0]["address"]})
    return result


def instances(value, flavor_data, image_data, network_data, pool="vms", ssh_authorized_keys=None,
              image_dir="/var/lib/hardway/images", console_dir="/var/log/libvirt/qemu"):
    """One record per instance of hardway_instances, in the order given. An
    instance that is not absent has its entry of a cloudinit_seed batch
    (``seed_entry``) and of a kvm_instance batch (``instance_entry``): what is
    its own; the tenant role gives what they share."""
    if not isinstance(value, list):
        raise ParameterError("hardway_instances", "must be a list")
    known_flavors = flavors(flavor_data)
    known_images = images(image_data, pool, image_dir)
    known_networks = _networks(network_data)
    seen = {}
    records = []
    for index, item in enumerate(value):
        where = _where("hardway_instances", index, item)
        _known_keys(where, item, INSTANCE_KEYS)
        name = item.get("name")
        if not isinstance(name, str) or not LABEL.match(name):
            raise ParameterError(where + ".name", "%r is not an instance name: a DNS label (lower-case letters, "
                                                  "digits, '-', at most 63)" % (name,))
        if name in seen:
            raise ParameterError(where + ".name", "%s is given twice (also hardway_instances[%d])" % (name, seen[name]))
        seen[name] = index
        state = item.get("state", "present")
        if state not in STATES:
            raise ParameterError(where + ".state", "%r is not one of %s" % (state, ", ".join(STATES)))
        tenant = item.get("tenant")
        if not isinstance(tenant, str) or not TENANT.match(tenant):
            raise ParameterError(where + ".tenant", "%r is not a tenant name (lower-case letters, digits, '-', '_')"
                                 % (tenant,))
        hypervisor = item.get("hypervisor")
        if hypervisor is not None and (not isinstance(hypervisor, str) or not hypervisor):
            raise ParameterError(where + ".hypervisor", "%r is not a host name" % (hypervisor,))
        apply = item.get("apply", "live")
        if apply not in APPLY:
            raise ParameterError(where + ".apply", "%r is not one of %s" % (apply, ", ".join(APPLY)))
        delete_volumes = item.get("delete_volumes", False)
        if not isinstance(delete_volumes, bool):
            raise ParameterError(where + ".delete_volumes", "%r is not a boolean" % (delete_volumes,))
        record = {"name": name, "tenant": tenant, "state": state, "hypervisor": hypervisor, "apply": apply,
                  "delete_volumes": delete_volumes,
                  "root": {"pool": pool, "name": name + ROOT_SUFFIX},
                  "seed": {"pool": pool, "image": name + SEED_SUFFIX},
                  "seed_volume": {"pool": pool, "name": name + SEED_SUFFIX}}
        if state == "absent":
            # what is needed to find and remove it; the rest may be gone from the data
            record.update({"memory": 0, "networks": [], "interfaces": [], "publish": []})
            records.append(record)
            continue
        flavor = known_flavors.get(item.get("flavor"))
        if flavor is None:
            raise ParameterError(where + ".flavor", "%r is not a flavor of hardway_flavors (%s)" % (
                item.get("flavor"), ", ".join(sorted(known_flavors)) or "none defined"))
        image = known_images.get(item.get("image"))
        if image is None or image["state"] == "absent":
            raise ParameterError(where + ".image", "%r is not an image of hardway_images (%s)" % (
                item.get("image"), ", ".join(sorted(n for n, i in known_images.items() if i["state"] == "present"))
                or "none defined"))
        nics = _nics(where + ".networks", name, item.get("networks", []), known_networks)
        keys = item.get("ssh_authorized_keys", ssh_authorized_keys or [])
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ParameterError(where + ".ssh_authorized_keys", "must be a list of public keys")
        user_data = item.get("user_data")
        if user_data is not None and not isinstance(user_data, (dict, str)):
            raise ParameterError(where + ".user_data", "must be a dict (cloud-config) or a string")
        boot = None
        if image["kernel"]:
            home = "%s/%s" % (image_dir, image["name"])
            boot = {"kernel": home + "/vmlinuz", "initrd": home + "/initrd.img" if image["initrd"] else None,
                    "cmdline": image["cmdline"]}
        record.update({
            "flavor": item["flavor"], "vcpus": flavor["vcpus"], "memory": flavor["memory"],
            "disk": flavor["disk"], "image": image["name"], "boot": boot,
            "root": {"pool": pool, "name": name + ROOT_SUFFIX, "source": image["clone_source"],
                     "size": flavor["disk"]},
            "networks": nics,
            "interfaces": [{"bridge": nic["bridge"], "mac": nic["mac"], "prefix": nic["prefix"]} for nic in nics],
            "address": next((nic["address"] for nic in nics if nic["address"]), None),
            "publish": _publish(where + ".publish", item.get("publish"), nics),
            "user_data": user_data, "ssh_authorized_keys": keys,
            "network_config": network_config(nics),
            "metadata": {"version": METADATA_VERSION, "tenant": tenant, "instance": name, "flavor": item["flavor"],
                         "image": image["name"],
                         "networks": [{"name": nic["name"], "prefix": nic["prefix"]} for nic in nics]},
        })
        record["seed_entry"] = {"rbd": record["seed"], "instance_id": name, "hostname": name,
                                "user_data": user_data, "ssh_authorized_keys": keys,
                                "network_config": record["network_config"]}
        record["instance_entry"] = {
            "name": name, "state": "stopped" if state == "stopped" else "running", "apply": apply,
            "autostart": state != "stopped", "vcpus": flavor["vcpus"], "memory": flavor["memory"],
            "kernel": boot["kernel"] if boot else None, "initrd": boot["initrd"] if boot else None,
            "cmdline": boot["cmdline"] if boot else None,
            "disks": [{"rbd": {"pool": pool, "image": record["root"]["name"]}}], "seed": {"rbd": record["seed"]},
            "interfaces": record["interfaces"], "metadata": record["metadata"],
            "serial_log": "%s/%s.console.log" % (console_dir, name)}
        records.append(record)
    return records


def placement(records, hypervisors):
    """instance name -> hypervisor (None: absent and on no hypervisor).

    ``hypervisors`` maps each hypervisor to {memory: MiB, domains: [names]}.
    An instance stays where it is defined; one that is defined nowhere goes
    where its record says, else to the hypervisor with the most memory left
    after the instances already placed (ties: the first by name). Memory of
    domains that are not instances of the data is not counted.
    """
    where = {}
    for host in sorted(hypervisors):
        for domain in hypervisors[host].get("domains") or []:
            where.setdefault(domain, []).append(host)
    left = dict((host, int(hypervisors[host].get("memory") or 0)) for host in hypervisors)
    result = {}
    for index, record in enumerate(records):
        at = _where("hardway_instances", index, record)
        found = where.get(record["name"], [])
        if len(found) > 1:
            raise ParameterError(at, "%s is defined on %s: remove all but one by hand" % (
                record["name"], " and ".join(found)))
        if record["hypervisor"] is not None and record["hypervisor"] not in hypervisors:
            raise ParameterError(at + ".hypervisor", "%s is not one of the hypervisors (%s)" % (
                record["hypervisor"], ", ".join(sorted(hypervisors)) or "none"))
        if found:
            if record["hypervisor"] is not None and record["hypervisor"] != found[0] and record["state"] != "absent":
                raise ParameterError(at + ".hypervisor", "%s runs on %s, not %s: instances are not moved; remove it "
                                     "(state: absent) first" % (record["name"], found[0], record["hypervisor"]))
            result[record["name"]] = found[0]
    # what is there already and what the data pins counts before the rest is placed
    for record in records:
        if record["name"] in result:
            left[result[record["name"]]] -= record["memory"]
        elif record["state"] == "absent":
            result[record["name"]] = None
        elif record["hypervisor"] is not None:
            result[record["name"]] = record["hypervisor"]
            left[record["hypervisor"]] -= record["memory"]
    for index, record in enumerate(records):
        if record["name"] in result:
            continue
        if not left:
            raise ParameterError(_where("hardway_instances", index, record), "there is no hypervisor to place it on")
        host = sorted(left, key=lambda h: (-left[h], h))[0]
        result[record["name"]] = host
        left[host] -= record["memory"]
    return result


def frontend_servers(records, frontend):
    """The backends of ``frontend``: every instance (not absent) that
    publishes on it, named after the instance, at its derived address."""
    servers = []
    for record in records:
        if record["state"] == "absent":
            continue
        for entry in record["publish"]:
            if entry["frontend"] == frontend:
                name = record["name"] if len([e for e in record["publish"] if e["frontend"] == frontend]) == 1 \
                    else "%s-%d" % (record["name"], entry["port"])
                servers.append({"name": name, "address": entry["address"], "port": entry["port"]})
    return servers
