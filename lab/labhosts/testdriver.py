"""Hypervisors without a lab: node files of libvirt's test driver.

A ``test:///PATH.xml`` URI opens a driver, in the caller's process, whose
domains are those of the ``<node>`` file at PATH. The domains here carry the
collection's metadata element as kvm_instance writes it, and the state the
test driver's ``runstate`` element gives them. Used by the unit tests of the
cluster inventory and by its benchmark (pure text, no libvirt import).
"""

import json
from xml.sax.saxutils import escape

# virDomainState numbers, as the runstate element takes them
RUNNING, PAUSED, SHUTOFF = 1, 3, 5
# kvm_instance's metadata element (plugins/module_utils/libvirt_domain.py: METADATA_NS)
METADATA_NS = "https://hardway.cloud/xmlns/instance/1"


def domain(name, metadata=None, nics=(), disks=(), state=RUNNING, raw=None, vcpus=1, memory=512, uuid=None):
    """A ``<domain type='test'>`` of a node file. ``metadata``: the JSON of the
    collection's element (None: no element; ``raw``: its text as is);
    ``nics``: (bridge, mac); ``disks``: ("rbd"|"file", source, readonly)."""
    lines = ["<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>",
             "  <name>%s</name>" % escape(name)]
    if uuid:
        lines.append("  <uuid>%s</uuid>" % uuid)
    if metadata is not None or raw is not None:
        text = raw if raw is not None else json.dumps(metadata, sort_keys=True)
        lines.append("  <metadata><hardway:instance xmlns:hardway='%s'>%s</hardway:instance></metadata>"
                     % (METADATA_NS, escape(text)))
    lines += ["  <memory unit='MiB'>%d</memory>" % memory, "  <vcpu>%d</vcpu>" % vcpus,
              "  <os><type>hvm</type></os>", "  <devices>"]
    for index, (kind, source, readonly) in enumerate(disks):
        if kind == "rbd":
            lines.append("    <disk type='network' device='disk'><driver name='qemu' type='raw'/>"
                         "<source protocol='rbd' name='%s'/>" % escape(source))
        else:
            lines.append("    <disk type='file' device='disk'><source file='%s'/>" % escape(source))
        lines.append("      <target dev='vd%s' bus='virtio'/>%s</disk>" % ("abcdefgh"[index], "<readonly/>" * readonly))
    for bridge, mac in nics:
        lines.append("    <interface type='bridge'><mac address='%s'/><source bridge='%s'/>"
                     "<model type='virtio'/></interface>" % (mac, escape(bridge)))
    lines += ["  </devices>", "  <test:runstate>%d</test:runstate>" % state, "</domain>"]
    return "\n".join(lines)


def node(path, *domains):
    """Writes the node file ``path`` (str or pathlib) holding ``domains``;
    returns its test:/// URI."""
    with open(str(path), "w", encoding="utf-8") as out:
        out.write("<node>\n%s\n</node>\n" % "\n".join(domains))
    return "test:///%s" % path


def simple_mac(name, index):
    """A locally administered unicast MAC of NIC ``index`` of ``name``
    (unique enough for a handful of names in a test)."""
    return "02:%02x:%02x:00:00:%02x" % (len(name) % 256, sum(map(ord, name)) % 256, index)


def tenant_vm(name, tenant, networks, state=RUNNING, flavor="small", image="debian12", mac=simple_mac, **extra):
    """A tenant VM as the tenant role defines it: an RBD root, an RBD seed,
    a bridge NIC per network, (name, prefix), with the MAC ``mac(name,
    index)``; the ``extra`` keys go into the metadata too."""
    macs = [mac(name, index) for index in range(len(networks))]
    metadata = dict({"version": 1, "tenant": tenant, "instance": name, "flavor": flavor, "image": image,
                     "networks": [{"name": net, "prefix": prefix} for net, prefix in networks]}, **extra)
    return domain(name, metadata, nics=[("br-" + net, address) for (net, _prefix), address in zip(networks, macs)],
                  disks=[("rbd", "vms/%s-%s" % (tenant, name), False), ("rbd", "vms/%s-%s-seed" % (tenant, name), True)],
                  state=state, vcpus=2, memory=1024)
