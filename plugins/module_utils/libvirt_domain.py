# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of a libvirt domain (a KVM/QEMU instance): the wanted instance
from module parameters, memory sizes, stable MAC addresses, and the part of the
domain XML the module owns. That part is read from any domain XML (libvirt's
own, with its uuid, addresses, controllers, aliases and default devices) as a
plain dict, compared as a dict, written into an existing definition without
touching the rest, and rendered alone for the diff. No I/O here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re
from xml.etree import ElementTree

from ansible_collections.hardway.cloud.plugins.module_utils.addressing import MAC, derived_mac, eui64_address  # noqa: F401
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError, check_bool
from ansible_collections.hardway.cloud.plugins.module_utils.ceph import check_name, client_name
from ansible_collections.hardway.cloud.plugins.module_utils.units import parse_size

# the collection's namespace for the domain's <metadata>; version 1 holds JSON
METADATA_NS = "https://hardway.cloud/xmlns/instance/1"
METADATA_KEY = "hardway"
METADATA_TAG = "{%s}instance" % METADATA_NS

VIRT_TYPES = ("kvm", "qemu")
DISK_FORMATS = ("raw", "qcow2")
DISK_BUSES = ("virtio", "sata", "scsi")
# what a new instance gets for what the parameters leave out
DEFAULTS = {"type": "kvm", "vcpus": 1, "memory": 512}
# the keys of the owned part, in the order the diff shows them
OWNED = ("name", "type", "vcpus", "memory", "cpu_model", "kernel", "initrd", "cmdline", "disks", "interfaces", "serial_log",
         "metadata")
# what a domain's name goes into besides libvirt (file names of its seed and
# serial log, volume names, host names, an operator's shell) takes it as is
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
# CPU modes that are not a named model (cpu_model)
CPU_MODES = ("host-passthrough", "host-model", "maximum")

ElementTree.register_namespace(METADATA_KEY, METADATA_NS)


def parse_memory(value, parameter="memory"):
    """MiB from an integer (MiB) or a string: 512, "512", "512M", "1G", "1.5GiB"
    (binary units; the result is a whole number of MiB, more than 0)."""
    if isinstance(value, bool) or value is None:
        raise ParameterError(parameter, "%r is not a memory size" % (value,))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        mib = value
    elif isinstance(value, str) and re.match(r"^\s*-?[0-9]+\s*$", value):
        mib = int(value)
    elif isinstance(value, str):
        size = parse_size(parameter, value)
        if size % (1 << 20):
            raise ParameterError(parameter, "%r is not a whole number of MiB" % (value,))
        mib = size >> 20
    else:
        raise ParameterError(parameter, "%r is not a memory size: give MiB or a size like 512M, 1G" % (value,))
    if mib <= 0:
        raise ParameterError(parameter, "%r: memory must be more than 0 MiB" % (value,))
    return mib


def check_mac(parameter, value):
    """A unicast MAC address, lower case."""
    if not isinstance(value, str) or not MAC.match(value):
        raise ParameterError(parameter, "%r is not a MAC address (six colon-separated hex octets)" % (value,))
    if int(value[:2], 16) & 1:
        raise ParameterError(parameter, "%s is a multicast address; a NIC needs a unicast one" % value)
    if value.replace(":", "").strip("0") == "":
        raise ParameterError(parameter, "%s is not a usable address" % value)
    return value.lower()


def _path(parameter, value):
    if not isinstance(value, str) or not value.startswith("/") or any(ord(char) < 32 for char in value):
        raise ParameterError(parameter, "%r is not an absolute path" % (value,))
    return value


def _positive_int(parameter, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParameterError(parameter, "%r: must be a whole number more than 0" % (value,))
    return value


def _disk(where, item, bus_counts, ceph):
    """One checked disk; ``where`` names it in messages (disks[1], seed)."""
    if not isinstance(item, dict):
        raise ParameterError(where, "must be a dict with a path or rbd")
    path, rbd = item.get("path"), item.get("rbd")
    if (path is None) == (rbd is None):
        raise ParameterError(where, "needs exactly one of path (a file or device of the host) and rbd "
                                    "(an image in Ceph)")
    disk_format = item.get("format") or "raw"
    if disk_format not in DISK_FORMATS:
        raise ParameterError(where + ".format", "%r is not one of %s" % (disk_format, ", ".join(DISK_FORMATS)))
    auth, monitors = None, []
    if path is not None:
        path = _path(where + ".path", path)
    else:
        rbd = _rbd(where + ".rbd", rbd)
        if disk_format != "raw":
            raise ParameterError(where + ".format", "an RBD image is attached as raw (got %s)" % disk_format)
        auth, monitors = ceph["auth"], ceph["monitors"]
    bus = item.get("bus") or "virtio"
    if bus not in DISK_BUSES:
        raise ParameterError(where + ".bus", "%r is not one of %s" % (bus, ", ".join(DISK_BUSES)))
    readonly = check_bool(where + ".readonly", item.get("readonly") or False)
    boot_order = item.get("boot_order")
    if boot_order is not None:
        boot_order = _positive_int(where + ".boot_order", boot_order)
    prefix = "vd" if bus == "virtio" else "sd"
    target = prefix + disk_letters(bus_counts.get(prefix, 0))
    bus_counts[prefix] = bus_counts.get(prefix, 0) + 1
    return {"path": path, "rbd": rbd, "format": disk_format, "bus": bus, "readonly": readonly, "target": target,
            "boot_order": boot_order, "auth": auth, "monitors": monitors}


def _rbd(where, value):
    if not isinstance(value, dict):
        raise ParameterError(where, "must be a dict with pool and image")
    unknown = sorted(set(value) - set(("pool", "image")))
    if unknown:
        raise ParameterError(where + "." + unknown[0], "is not an option of an RBD disk (pool, image)")
    result = {}
    for key in ("pool", "image"):
        result[key] = check_name("%s.%s" % (where, key), value.get(key), key)
    return result


def _monitor(parameter, value):
    """{"name", "port"} from "host", "host:port", "[v6]:port" or a bare IPv6 address."""
    if not isinstance(value, str) or not value:
        raise ParameterError(parameter, "%r is not a monitor address" % (value,))
    match = re.match(r"^\[([0-9A-Fa-f:.]+)\](?::([0-9]+))?\Z", value)
    if match:
        name, port = match.group(1), match.group(2)
    elif value.count(":") > 1:
        name, port = value, None
    else:
        name, _sep, port = value.partition(":")
        port = port or None
    bad_port = port is not None and not (port.isdigit() and 0 < int(port) < 65536)
    if not re.match(r"^[A-Za-z0-9.:-]+\Z", name) or bad_port:
        raise ParameterError(parameter, "%r is not a monitor address (host, host:port or [ipv6]:port)" % (value,))
    return {"name": name, "port": port}


def ceph_options(value):
    """How QEMU reaches Ceph for RBD disks: the cephx user, the libvirt secret
    with its key (a UUID or a usage name) and the monitors (none: QEMU reads
    the host's ceph.conf)."""
    if not isinstance(value, dict):
        raise ParameterError("ceph", "must be a dict")
    user = client_name("ceph.user", "hypervisor" if value.get("user") is None else value["user"])
    secret = value.get("secret") or "client.%s secret" % user
    if not isinstance(secret, str) or any(ord(char) < 32 for char in secret):
        raise ParameterError("ceph.secret", "%r is not a libvirt secret's UUID or usage name" % (secret,))
    kind = "uuid" if UUID.match(secret) else "usage"
    monitors = [_monitor("ceph.monitors[%d]" % index, item) for index, item in enumerate(value.get("monitors") or [])]
    return {"auth": {"user": user, kind: secret.lower() if kind == "uuid" else secret}, "monitors": monitors}


def _seed(value, buses, ceph):
    """The cloud-init seed disk: read-only raw virtio after the others (the
    cloud kernel has no AHCI, so no cdrom)."""
    if isinstance(value, str):
        value = {"path": _path("seed", value)}
    if not isinstance(value, dict):
        raise ParameterError("seed", "must be a path or a dict with path or rbd")
    unknown = sorted(set(value) - set(("path", "rbd")))
    if unknown:
        raise ParameterError("seed." + unknown[0], "is not an option of seed (path, rbd)")
    seed = _disk("seed", dict(value, format="raw", readonly=True), buses, ceph)
    seed["seed"] = True
    return seed


def disk_letters(index):
    """a, b, ..., z, aa, ab, ...: the letters of disk number ``index`` (vda, vdaa)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def wanted(params):
    """The wanted instance from module parameters. Keys whose option was left
    out are missing: an existing instance keeps what it has there. Interfaces
    without a MAC have ``mac: None`` until ``resolve``."""
    name = params.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ParameterError("name", "%r is not an instance name: letters, digits, '_', '.' and '-', starting with "
                                     "a letter, digit or '_'" % (name,))
    want = {"name": name}
    if params.get("virt_type") is not None:
        if params["virt_type"] not in VIRT_TYPES:
            raise ParameterError("virt_type", "%r is not one of %s" % (params["virt_type"], ", ".join(VIRT_TYPES)))
        want["type"] = params["virt_type"]
    if params.get("vcpus") is not None:
        want["vcpus"] = _positive_int("vcpus", params["vcpus"])
    if params.get("memory") is not None:
        want["memory"] = parse_memory(params["memory"])
    if params.get("cpu_model") is not None:
        model = params["cpu_model"]
        if not isinstance(model, str) or not re.match(r"^[A-Za-z0-9_.-]+\Z", model):
            raise ParameterError("cpu_model", "%r is not a CPU model (host-passthrough, host-model or a model name "
                                              "like Haswell-noTSX)" % (model,))
        want["cpu_model"] = model
    for key in ("kernel", "initrd"):
        if params.get(key) is not None:
            want[key] = _path(key, params[key])
    if params.get("cmdline") is not None:
        cmdline = params["cmdline"]
        if not isinstance(cmdline, str) or any(ord(char) < 32 for char in cmdline):
            raise ParameterError("cmdline", "%r is not a kernel command line (one line, no control characters)"
                                 % (cmdline,))
        want["cmdline"] = cmdline
    if params.get("disks") is not None or params.get("seed") is not None:
        ceph = ceph_options(params.get("ceph") or {})
        buses = {}
        disks = [_disk("disks[%d]" % index, item, buses, ceph)
                 for index, item in enumerate(params.get("disks") or [])]
        if params.get("seed") is not None:
            disks.append(_seed(params["seed"], buses, ceph))
        orders = {}
        for index, disk in enumerate(disks):
            where = "seed" if disk.get("seed") else "disks[%d]" % index
            if disk["boot_order"] is not None and disk["boot_order"] in orders:
                raise ParameterError(where + ".boot_order", "%d is also the boot order of %s"
                                     % (disk["boot_order"], orders[disk["boot_order"]]))
            orders[disk["boot_order"]] = where
        want["disks"] = disks
    if params.get("interfaces") is not None:
        interfaces, macs = [], {}
        for index, item in enumerate(params["interfaces"]):
            where = "interfaces[%d]" % index
            if not isinstance(item, dict):
                raise ParameterError(where, "must be a dict with a bridge")
            bridge = item.get("bridge")
            if not isinstance(bridge, str) or not re.match(r"^[^/\s:]{1,15}\Z", bridge):
                raise ParameterError(where + ".bridge", "%r is not a bridge name (1-15 characters, no '/', ':' "
                                                        "or whitespace)" % (bridge,))
            mac = check_mac(where + ".mac", item["mac"]) if item.get("mac") is not None else None
            if mac and mac in macs:
                raise ParameterError(where + ".mac", "%s is also the MAC of interfaces[%d]" % (mac, macs[mac]))
            if mac:
                macs[mac] = index
            prefix = item.get("prefix")
            if prefix is not None:
                try:
                    eui64_address(prefix, "02:00:00:00:00:01")
                except ValueError as exc:
                    raise ParameterError(where + ".prefix", "%r: %s" % (prefix, exc))
            interfaces.append({"bridge": bridge, "mac": mac, "prefix": prefix})
        want["interfaces"] = interfaces
    if params.get("serial_log") is not None:
        want["serial_log"] = _path("serial_log", params["serial_log"])
    if params.get("metadata") is not None:
        if not isinstance(params["metadata"], dict):
            raise ParameterError("metadata", "must be a dict")
        try:
            want["metadata"] = json.loads(json.dumps(params["metadata"], sort_keys=True))
        except (TypeError, ValueError) as exc:
            raise ParameterError("metadata", "cannot be stored as JSON: %s" % exc)
    return want


def resolve(want, actual):
    """The owned part the instance will have: ``actual`` (the owned part of the
    existing definition, None for a new instance) with what ``want`` sets.
    A NIC without a MAC keeps the MAC its index has now, else gets the derived
    one; a new instance gets DEFAULTS for what is left out."""
    if actual:
        result = copy.deepcopy(actual)
    else:
        result = dict(DEFAULTS, name=want["name"], disks=[], interfaces=[], kernel=None, initrd=None, cmdline=None,
                      serial_log=None, metadata=None, cpu_model=None)
    for key, value in want.items():
        if key in ("disks", "interfaces"):
            continue
        result[key] = copy.deepcopy(value)
    if not actual and "cpu_model" not in want and result["type"] == "kvm":
        # a guest under KVM sees the host's CPU features (libvirt's stable
        # rendering of them), not QEMU's lowest-common qemu64
        result["cpu_model"] = "host-model"
    if "disks" in want:
        result["disks"] = [dict((k, v) for k, v in disk.items() if k != "seed") for disk in want["disks"]]
    if "interfaces" in want:
        before = (actual or {}).get("interfaces") or []
        interfaces, taken = [], set(nic["mac"] for nic in want["interfaces"] if nic["mac"])
        for index, nic in enumerate(want["interfaces"]):
            mac = nic["mac"]
            if mac is None:
                kept = before[index]["mac"] if index < len(before) else None
                mac = kept if kept and kept not in taken else derived_mac(want["name"], index)
                if mac in taken:
                    raise ParameterError("interfaces[%d].mac" % index, "the derived MAC %s is also given to another "
                                                                       "interface: give this one a MAC" % mac)
                taken.add(mac)
            interfaces.append({"bridge": nic["bridge"], "mac": mac, "model": "virtio"})
        result["interfaces"] = interfaces
    return result


def _text(element, path):
    found = element.find(path)
    return found.text if found is not None and found.text is not None else None


def _memory_mib(element):
    if element is None or element.text is None:
        return None
    units = {"b": 1, "bytes": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30,
             "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
             "tb": 1000 ** 4}
    size = int(element.text) * units[(element.get("unit") or "KiB").lower()]
    return size >> 20 if size % (1 << 20) == 0 else size / float(1 << 20)


def _cpu_model(element):
    if element is None:
        return None
    mode = element.get("mode")
    if mode in CPU_MODES:
        return mode
    return _text(element, "model")


def _cpu_element(model):
    if model in CPU_MODES:
        return ElementTree.Element("cpu", mode=model)
    element = ElementTree.Element("cpu", mode="custom", match="exact")
    _sub(element, "model", model, fallback="forbid")
    return element


def _parse_disk(element):
    source = element.find("source")
    target = element.find("target")
    driver = element.find("driver")
    boot = element.find("boot")
    path, rbd, auth, monitors = None, None, None, []
    if source is not None and element.get("type") == "network":
        if source.get("protocol") == "rbd" and "/" in (source.get("name") or ""):
            pool, image = source.get("name").split("/", 1)
            rbd = {"pool": pool, "image": image}
        monitors = [{"name": host.get("name"), "port": host.get("port")} for host in source.findall("host")]
        found = element.find("auth")
        found = found if found is not None else source.find("auth")
        if found is not None:
            secret = found.find("secret")
            auth = {"user": found.get("username")}
            if secret is not None:
                kind = "uuid" if secret.get("uuid") else "usage"
                auth[kind] = secret.get(kind)
    elif source is not None:
        path = source.get("file") or source.get("dev")
    return {"path": path, "rbd": rbd, "format": driver.get("type") if driver is not None else None,
            "bus": target.get("bus") if target is not None else None, "readonly": element.find("readonly") is not None,
            "target": target.get("dev") if target is not None else None,
            "boot_order": int(boot.get("order")) if boot is not None and boot.get("order") else None,
            "auth": auth, "monitors": monitors}


def _parse_interface(element):
    source = element.find("source")
    mac = element.find("mac")
    model = element.find("model")
    return {"bridge": source.get("bridge") if source is not None else None,
            "mac": mac.get("address").lower() if mac is not None and mac.get("address") else None,
            "model": model.get("type") if model is not None else None}


def _owned_disks(devices):
    return [element for element in devices.findall("disk") if element.get("device", "disk") == "disk"]


def _owned_interfaces(devices):
    return [element for element in devices.findall("interface") if element.get("type") == "bridge"]


def owned(xml):
    """The owned part of a domain XML (libvirt's or ours) as a dict."""
    root = ElementTree.fromstring(xml)
    devices = root.find("devices")
    if devices is None:
        devices = ElementTree.Element("devices")
    vcpu = _text(root, "vcpu")
    serial_log = None
    serial = devices.find("serial")
    if serial is not None and serial.get("type") == "file" and serial.find("source") is not None:
        serial_log = serial.find("source").get("path")
    metadata = None
    element = root.find("metadata/" + METADATA_TAG)
    if element is not None:
        try:
            metadata = json.loads(element.text or "{}")
        except ValueError:
            metadata = {"_unreadable": element.text}
    return {
        "name": _text(root, "name"),
        "type": root.get("type"),
        "vcpus": int(vcpu) if vcpu is not None else None,
        "memory": _memory_mib(root.find("memory")),
        "cpu_model": _cpu_model(root.find("cpu")),
        "kernel": _text(root, "os/kernel"),
        "initrd": _text(root, "os/initrd"),
        "cmdline": _text(root, "os/cmdline"),
        "disks": [_parse_disk(element) for element in _owned_disks(devices)],
        "interfaces": [_parse_interface(element) for element in _owned_interfaces(devices)],
        "serial_log": serial_log,
        "metadata": metadata,
    }


def _sub(parent, tag, text=None, **attrs):
    child = ElementTree.SubElement(parent, tag, attrs)
    child.text = text
    return child


def _disk_element(disk):
    if disk.get("rbd"):
        element = ElementTree.Element("disk", {"type": "network", "device": "disk"})
        _sub(element, "driver", name="qemu", type="raw")
        auth = disk.get("auth")
        if auth:
            kind = "uuid" if "uuid" in auth else "usage"
            _sub(_sub(element, "auth", username=auth["user"]), "secret", type="ceph", **{kind: auth[kind]})
        source = _sub(element, "source", protocol="rbd", name="%s/%s" % (disk["rbd"]["pool"], disk["rbd"]["image"]))
        for monitor in disk.get("monitors") or []:
            _sub(source, "host", **dict((key, value) for key, value in monitor.items() if value is not None))
    else:
        block = disk["path"].startswith("/dev/")
        element = ElementTree.Element("disk", {"type": "block" if block else "file", "device": "disk"})
        _sub(element, "driver", name="qemu", type=disk["format"])
        _sub(element, "source", **{"dev" if block else "file": disk["path"]})
    _sub(element, "target", dev=disk["target"], bus=disk["bus"])
    if disk.get("boot_order") is not None:
        _sub(element, "boot", order=str(disk["boot_order"]))
    if disk["readonly"]:
        _sub(element, "readonly")
    return element


def _interface_element(nic):
    element = ElementTree.Element("interface", type="bridge")
    _sub(element, "mac", address=nic["mac"])
    _sub(element, "source", bridge=nic["bridge"])
    _sub(element, "model", type=nic.get("model") or "virtio")
    return element


def _set_os(os_element, key, value):
    element = os_element.find(key)
    if value is None:
        if element is not None:
            os_element.remove(element)
        return
    if element is None:
        element = ElementTree.Element(key)
        # after <type> and the other boot elements, in libvirt's order
        order = ("type", "loader", "nvram", "kernel", "initrd", "cmdline")
        position = 0
        for index, child in enumerate(list(os_element)):
            if child.tag in order[:order.index(key)]:
                position = index + 1
        os_element.insert(position, element)
    element.text = value


def _replace_devices(devices, current, wanted_items, parse, build):
    """Keep an element whose owned part is unchanged (with libvirt's address
    and alias), replace the others."""
    for index, item in enumerate(wanted_items):
        if index < len(current) and parse(current[index]) == item:
            continue
        element = build(item)
        if index < len(current):
            position = list(devices).index(current[index])
            devices.remove(current[index])
            devices.insert(position, element)
        else:
            devices.append(element)
    for element in current[len(wanted_items):]:
        devices.remove(element)


def apply(xml, target):
    """``xml`` (an existing definition, or ``skeleton``'s) with the owned part
    set to ``target`` (as ``resolve`` returns it); everything else is kept."""
    root = ElementTree.fromstring(xml)
    root.set("type", target["type"])
    for tag in ("memory", "currentMemory"):
        element = root.find(tag)
        if element is None:
            element = _sub(root, tag)
        element.set("unit", "MiB")
        element.text = str(target["memory"])
    vcpu = root.find("vcpu")
    if vcpu is None:
        vcpu = _sub(root, "vcpu")
    vcpu.text = str(target["vcpus"])
    vcpu.attrib.pop("current", None)
    cpu = root.find("cpu")
    if _cpu_model(cpu) != target["cpu_model"]:
        position = list(root).index(cpu) if cpu is not None else len(root)
        if cpu is not None:
            root.remove(cpu)
        if target["cpu_model"] is not None:
            root.insert(position, _cpu_element(target["cpu_model"]))
    os_element = root.find("os")
    for key in ("kernel", "initrd", "cmdline"):
        _set_os(os_element, key, target[key])
    devices = root.find("devices")
    _replace_devices(devices, _owned_disks(devices), target["disks"], _parse_disk, _disk_element)
    _replace_devices(devices, _owned_interfaces(devices), target["interfaces"], _parse_interface,
                     _interface_element)
    serial = devices.find("serial")
    current_log = owned(ElementTree.tostring(root, encoding="unicode"))["serial_log"]
    if current_log != target["serial_log"]:
        # the console of serial port 0 follows the serial device
        for element in devices.findall("serial") + [c for c in devices.findall("console")
                                                    if c.find("target") is None
                                                    or c.find("target").get("type", "serial") == "serial"]:
            devices.remove(element)
        if target["serial_log"]:
            serial = _sub(devices, "serial", type="file")
            _sub(serial, "source", path=target["serial_log"], append="on")
        else:
            serial = _sub(devices, "serial", type="pty")
        _sub(serial, "target", port="0")
    metadata = root.find("metadata")
    element = metadata.find(METADATA_TAG) if metadata is not None else None
    current = owned(ElementTree.tostring(root, encoding="unicode"))["metadata"]
    if current != target["metadata"]:
        if element is not None:
            metadata.remove(element)
        if target["metadata"] is not None:
            if metadata is None:
                metadata = ElementTree.Element("metadata")
                root.insert(list(root).index(root.find("name")) + 1, metadata)
            metadata.append(metadata_element(target["metadata"]))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode")


def metadata_element(value):
    element = ElementTree.Element(METADATA_TAG)
    element.text = json.dumps(value, sort_keys=True)
    return element


def metadata_xml(value):
    """The metadata element alone, as libvirt's setMetadata takes it."""
    return "<instance>%s</instance>" % _escape(json.dumps(value, sort_keys=True))


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def skeleton(name):
    """What a new instance has besides the owned part: ACPI (for a graceful
    shutdown), the usual life cycle actions, a virtio RNG, no display."""
    root = ElementTree.Element("domain", type="kvm")
    _sub(root, "name", name)
    _sub(root, "memory", "1", unit="MiB")
    _sub(root, "vcpu", "1")
    os_element = _sub(root, "os")
    _sub(os_element, "type", "hvm")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    for event, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
        _sub(root, event, action)
    devices = _sub(root, "devices")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    return ElementTree.tostring(root, encoding="unicode")


def render(part):
    """The owned part as XML text, for the diff (None renders as '')."""
    if part is None:
        return ""
    root = ElementTree.Element("domain", type=part["type"] or "")
    _sub(root, "name", part["name"])
    if part["metadata"] is not None:
        _sub(root, "metadata").append(metadata_element(part["metadata"]))
    _sub(root, "memory", str(part["memory"]), unit="MiB")
    _sub(root, "vcpu", str(part["vcpus"]))
    if part.get("cpu_model") is not None:
        root.append(_cpu_element(part["cpu_model"]))
    os_element = _sub(root, "os")
    for key in ("kernel", "initrd", "cmdline"):
        if part[key] is not None:
            _sub(os_element, key, part[key])
    devices = _sub(root, "devices")
    for disk in part["disks"]:
        devices.append(_disk_element(disk) if disk["path"] or disk["rbd"] else
                       ElementTree.Element("disk", device="disk"))
    for nic in part["interfaces"]:
        devices.append(_interface_element(nic))
    if part["serial_log"]:
        _sub(_sub(devices, "serial", type="file"), "source", path=part["serial_log"])
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def restart_differs(live, persistent):
    """Whether a running instance (owned part ``live``) needs a restart to
    become ``persistent``: the metadata is applied live, all else is not."""
    live, persistent = [dict((key, value) for key, value in part.items() if key != "metadata")
                        for part in (live, persistent)]
    if persistent.get("cpu_model") is None:
        # with no CPU asked for, libvirt writes the one it chose into the running definition
        live["cpu_model"] = None
    return live != persistent


def host_problems(want, exists, is_bridge):
    """The first thing the host lacks for ``want`` as a ParameterError (None
    when there is none): files that do not exist, bridges that are not."""
    checks = [(key, want.get(key)) for key in ("kernel", "initrd")]
    for index, disk in enumerate(want.get("disks") or []):
        if disk["path"] is not None:
            checks.append(("seed" if disk.get("seed") else "disks[%d].path" % index, disk["path"]))
    for parameter, path in checks:
        if path is not None and not exists(path):
            return ParameterError(parameter, "%s does not exist on the host" % path)
    if want.get("serial_log"):
        directory = want["serial_log"].rsplit("/", 1)[0] or "/"
        if not exists(directory):
            return ParameterError("serial_log", "directory %s does not exist on the host" % directory)
    for index, nic in enumerate(want.get("interfaces") or []):
        if not is_bridge(nic["bridge"]):
            return ParameterError("interfaces[%d].bridge" % index, "%s is not a bridge on the host"
                                  % nic["bridge"])
    return None


def rbd_disks(want):
    """(parameter, pool, image) of each RBD disk of ``want``."""
    return [("seed.rbd" if disk.get("seed") else "disks[%d].rbd" % index, disk["rbd"]["pool"], disk["rbd"]["image"])
            for index, disk in enumerate(want.get("disks") or []) if disk["rbd"]]


def parameter_of_error(message, want):
    """The parameter a libvirt error message is about, when it names one of
    the paths or bridges of ``want``; None otherwise."""
    for index, nic in enumerate(want.get("interfaces") or []):
        if "'%s'" % nic["bridge"] in message or " %s:" % nic["bridge"] in message:
            return "interfaces[%d].bridge" % index
    for index, disk in enumerate(want.get("disks") or []):
        where = "seed" if disk.get("seed") else "disks[%d]" % index
        if disk["path"] and disk["path"] in message:
            return where if disk.get("seed") else where + ".path"
        if disk["rbd"] and "%(pool)s/%(image)s" % disk["rbd"] in message:
            return where + ".rbd"
        if disk["auth"] and (disk["auth"].get("usage") or disk["auth"].get("uuid")) in message:
            return "ceph.secret"
    for key in ("kernel", "initrd", "serial_log"):
        if want.get(key) and want[key] in message:
            return key
    if "domaintype" in message or "virt type" in message:
        return "virt_type"
    if "memory" in message.lower():
        return "memory"
    return None


def interface_facts(part, want):
    """The instance's NICs for the result: bridge, MAC, and the SLAAC address
    when the entry gave the network's prefix."""
    facts = []
    given = want.get("interfaces") or []
    for index, nic in enumerate(part["interfaces"] if part else []):
        fact = {"bridge": nic["bridge"], "mac": nic["mac"]}
        prefix = given[index].get("prefix") if index < len(given) else None
        if prefix:
            fact["prefix"] = prefix
            fact["address"] = eui64_address(prefix, nic["mac"])
        facts.append(fact)
    return facts


def live_changes(live, target):
    """What can be done to a running instance whose owned part is ``live`` to
    bring its devices to ``target`` without a restart: (op, kind, index) with
    op attach (a device added at the end), detach (one removed from the end)
    or update (a NIC moved to another bridge, same MAC). Anything else waits
    for a restart."""
    ops = []
    for kind in ("disks", "interfaces"):
        have, want = live[kind], target[kind]
        common = min(len(have), len(want))
        for index in range(common):
            if kind == "interfaces" and have[index] != want[index] and \
                    dict(have[index], bridge=None) == dict(want[index], bridge=None):
                ops.append(("update", kind, index))
        ops.extend(("attach", kind, index) for index in range(common, len(want)))
        ops.extend(("detach", kind, index) for index in reversed(range(common, len(have))))
    return ops


def after_live_changes(live, target, ops):
    """``live`` as it is once ``ops`` (from live_changes) are done."""
    result = copy.deepcopy(live)
    for op, kind, index in ops:
        if op == "detach":
            del result[kind][index]
        elif op == "update":
            result[kind][index] = copy.deepcopy(target[kind][index])
    for op, kind, index in ops:
        if op == "attach":
            result[kind].append(copy.deepcopy(target[kind][index]))
    if "metadata" in target:
        result["metadata"] = copy.deepcopy(target["metadata"])
    return result


def device_xml(kind, item):
    """The XML of one disk or NIC (as attachDevice takes it)."""
    element = _disk_element(item) if kind == "disks" else _interface_element(item)
    return ElementTree.tostring(element, encoding="unicode")


def live_device_xml(xml, kind, index):
    """The XML of device ``index`` of ``kind`` in a domain XML (libvirt's own,
    with its alias), as detachDevice takes it."""
    devices = ElementTree.fromstring(xml).find("devices")
    elements = _owned_disks(devices) if kind == "disks" else _owned_interfaces(devices)
    return ElementTree.tostring(elements[index], encoding="unicode")


def taps(xml):
    """{mac: (tap, bridge)} of the bridge NICs of a running domain's XML."""
    devices = ElementTree.fromstring(xml).find("devices")
    found = {}
    for element in _owned_interfaces(devices if devices is not None else ElementTree.Element("devices")):
        nic = _parse_interface(element)
        target = element.find("target")
        if nic["mac"] and target is not None and target.get("dev"):
            found[nic["mac"]] = (target.get("dev"), nic["bridge"])
    return found


def volumes(part):
    """The volumes of an owned part: ("file", path) and ("rbd", pool, image)."""
    found = []
    for disk in (part or {}).get("disks") or []:
        if disk.get("rbd"):
            found.append(("rbd", disk["rbd"]["pool"], disk["rbd"]["image"]))
        elif disk.get("path"):
            found.append(("file", disk["path"]))
    return found


def cpu_models(domain_capabilities):
    """What libvirt's domain capabilities XML offers for cpu_model: the
    supported modes and the usable named models."""
    root = ElementTree.fromstring(domain_capabilities)
    modes, models = [], set()
    for mode in root.findall("cpu/mode"):
        if mode.get("supported") != "yes":
            continue
        if mode.get("name") in CPU_MODES:
            modes.append(mode.get("name"))
        elif mode.get("name") == "custom":
            models.update(model.text for model in mode.findall("model")
                          if model.text and model.get("usable", "unknown") != "no")
    return {"modes": modes, "models": models}


def max_vcpus(domain_capabilities):
    """The most vCPUs a domain of libvirt's domain capabilities XML can have
    (the machine type's limit), or None when it does not say."""
    vcpu = ElementTree.fromstring(domain_capabilities).find("vcpu")
    max_value = vcpu.get("max") if vcpu is not None else None
    return int(max_value) if max_value and max_value.isdigit() else None
