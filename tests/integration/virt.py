"""Libvirt on a lab hypervisor host, for tests that boot real guests.

A lab host with the kvm and tun devices, made a hypervisor by the
collection's hypervisor role (libvirt, qemu), gets Linux bridges and guests
defined from plain libvirt XML: direct kernel boot, virtio disks (the cloud kernel has no AHCI,
so a NoCloud seed is a virtio disk too), one virtio NIC per bridge, the serial
console to a file. Guests are TCG (``<domain type="qemu">``): the lab's
/dev/kvm cannot run a stock guest kernel, and libvirt would still claim kvm.

Files move into the host and console logs are read through the host's root
overlay on the machine (no scp, no polling over ssh); commands run over ssh,
the way Ansible reaches the host.
"""

import collections
import os
import re
import shlex
import shutil
import subprocess
import time
from xml.etree import ElementTree

# Where guest files live in the host: a directory libvirt's qemu user can reach.
GUEST_ROOT = "/var/lib/libvirt/images"
STATE_CHECK_INTERVAL = 5

Disk = collections.namedtuple("Disk", "path format readonly", defaults=("raw", False))
Disk.__doc__ = "A guest disk: a file in the host, its format (raw, qcow2), read-only or not."
Nic = collections.namedtuple("Nic", "bridge mac")
Nic.__doc__ = "A guest NIC plugged into a Linux bridge of the host."


def _element(parent, tag, text=None, **attrs):
    child = ElementTree.SubElement(parent, tag, attrs)
    child.text = text
    return child


def domain_xml(name, kernel, initrd, cmdline, disks, nics, serial_log, memory_mib=512, vcpus=1,
               domain_type="qemu"):
    """Libvirt XML of a guest booted by direct kernel boot.

    Disks are vda, vdb, ... in order, all virtio, with cache="unsafe" (a test
    guest's disk is thrown away; flushes would only slow the boot). NICs are
    virtio without an option ROM (nothing boots from the network, and the ROM
    only costs time). The serial console goes to serial_log; no display.
    """
    domain = ElementTree.Element("domain", type=domain_type)
    _element(domain, "name", name)
    _element(domain, "memory", str(memory_mib), unit="MiB")
    _element(domain, "vcpu", str(vcpus))
    boot = _element(domain, "os")
    _element(boot, "type", "hvm", arch="x86_64")
    _element(boot, "kernel", kernel)
    _element(boot, "initrd", initrd)
    _element(boot, "cmdline", cmdline)
    _element(_element(domain, "features"), "acpi")
    for event, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
        _element(domain, event, action)
    devices = _element(domain, "devices")
    for index, disk in enumerate(disks):
        element = _element(devices, "disk", type="file", device="disk")
        _element(element, "driver", name="qemu", type=disk.format, cache="unsafe")
        _element(element, "source", file=disk.path)
        _element(element, "target", dev="vd" + chr(ord("a") + index), bus="virtio")
        if disk.readonly:
            _element(element, "readonly")
    for nic in nics:
        element = _element(devices, "interface", type="bridge")
        _element(element, "source", bridge=nic.bridge)
        _element(element, "mac", address=nic.mac)
        _element(element, "model", type="virtio")
        _element(element, "rom", enabled="no")
    serial = _element(devices, "serial", type="file")
    _element(serial, "source", path=serial_log)
    _element(serial, "target", port="0")
    rng = _element(devices, "rng", model="virtio")
    _element(rng, "backend", "/dev/urandom", model="random")
    _element(devices, "memballoon", model="none")
    ElementTree.indent(domain)
    return ElementTree.tostring(domain, encoding="unicode") + "\n"


class Hypervisor:
    """One lab host (with the kvm and tun devices) as a libvirt hypervisor."""

    def __init__(self, state, name):
        self.state = state
        self.name = name
        host = next(h for h in state["hosts"] if h["name"] == name)
        # the host's root as the machine sees it (its overlay mount)
        self.root = os.path.join(host["hostdir"], "root")
        self.domains = []

    def path(self, path_in_host):
        """Where a path of the host is on the machine."""
        return os.path.join(self.root, path_in_host.lstrip("/"))

    def run(self, command, check=True, timeout=120, input_text=None):
        """A shell command in the host (over ssh); the CompletedProcess."""
        proc = subprocess.run(["ssh", "-F", self.state["ssh_config"], "-o", "BatchMode=yes", self.name, command],
                              capture_output=True, text=True, timeout=timeout, input=input_text, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("%s: %r failed (rc=%d):\n%s%s"
                                 % (self.name, command, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def copy_in(self, src, dest):
        """Copy a file of the machine into the host (sparse files stay sparse);
        the path in the host."""
        target = self.path(dest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        subprocess.run(["cp", "--sparse=always", src, target], check=True)
        return dest

    def write(self, dest, text, mode=0o644):
        """Write a file in the host; its path in the host."""
        target = self.path(dest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(target, mode)
        return dest

    def read(self, path_in_host):
        """The text of a file in the host ("" while it does not exist)."""
        try:
            with open(self.path(path_in_host), encoding="utf-8", errors="replace") as src:
                return src.read()
        except FileNotFoundError:
            return ""

    def bridge(self, name, addresses=()):
        """A Linux bridge in the host with static addresses (usable at once: no
        DAD, and no addresses from router advertisements)."""
        commands = ["ip link add %s type bridge" % name,
                    "sysctl -qw net.ipv6.conf.%s.accept_ra=0" % name]
        commands += ["ip addr add %s dev %s nodad" % (address, name) for address in addresses]
        commands += ["ip link set %s up" % name]
        self.run(" && ".join(commands))

    def guest_dir(self, name):
        """The directory (in the host) of a guest's files, removed with the guest."""
        return "%s/%s" % (GUEST_ROOT, name)

    def define(self, name, kernel, initrd, cmdline, disks=(), nics=(), memory_mib=512, vcpus=1,
               domain_type="qemu"):
        """Define a guest (not started); kernel, initrd and disk paths are in the
        host. Its serial console goes to GUEST_ROOT/NAME/serial.log."""
        serial_log = self.guest_dir(name) + "/serial.log"
        xml = domain_xml(name, kernel, initrd, cmdline, list(disks), list(nics), serial_log,
                         memory_mib=memory_mib, vcpus=vcpus, domain_type=domain_type)
        xml_path = self.write(self.guest_dir(name) + "/domain.xml", xml)
        self.run("virsh -q define %s" % shlex.quote(xml_path))
        domain = Domain(self, name, xml, serial_log)
        self.domains.append(domain)
        return domain

    def guest_ssh(self, address, command, key, user="debian", check=True, timeout=60):
        """A command in a guest, over ssh from the host (guests are reachable
        only from there). key is the private key's path in the host; the
        guest's host key is new on every boot, so it is neither checked nor kept."""
        ssh = ("ssh -i %s -l %s -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=no "
               "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR %s %s"
               % (shlex.quote(key), shlex.quote(user), shlex.quote(address), shlex.quote(command)))
        return self.run(ssh, check=check, timeout=timeout)

    def cleanup(self):
        """Destroy and undefine every guest defined through this object."""
        for domain in reversed(self.domains):
            domain.remove()
        self.domains = []


class Domain:
    """A guest defined on a Hypervisor."""

    def __init__(self, hypervisor, name, xml, serial_log):
        self.hypervisor = hypervisor
        self.name = name
        self.xml = xml
        self.serial_log = serial_log
        self.started = None  # time.monotonic() of the last start, for timings

    def start(self):
        self.hypervisor.run("virsh -q start %s" % shlex.quote(self.name))
        self.started = time.monotonic()

    def state(self):
        """What virsh domstate says (running, shut off, ...)."""
        return self.hypervisor.run("virsh domstate %s" % shlex.quote(self.name), check=False).stdout.strip()

    def console(self):
        """Everything the guest wrote to its serial console so far."""
        return self.hypervisor.read(self.serial_log)

    def wait_console(self, pattern, timeout=300, interval=0.5):
        """The first match of the regular expression in the serial console.

        Raises AssertionError after timeout, or as soon as the guest is no
        longer running, with the end of the console in the message.
        """
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        next_state_check = time.monotonic() + STATE_CHECK_INTERVAL
        while True:
            match = regex.search(self.console())
            if match:
                return match
            now = time.monotonic()
            gone = False
            if now >= next_state_check:
                # over ssh, so only now and then: a guest that died never prints
                gone = self.state() not in ("running", "paused", "in shutdown")
                next_state_check = now + STATE_CHECK_INTERVAL
            if gone or now >= deadline:
                raise AssertionError("guest %s: no %r on the console within %ss (state %s); console ends:\n%s"
                                     % (self.name, pattern, timeout, self.state(), self.console()[-3000:]))
            time.sleep(interval)

    def remove(self):
        """Destroy and undefine the guest and delete its files in the host."""
        quoted = shlex.quote(self.name)
        self.hypervisor.run("virsh -q destroy %s; virsh -q undefine %s" % (quoted, quoted), check=False)
        shutil.rmtree(self.hypervisor.path(self.hypervisor.guest_dir(self.name)), ignore_errors=True)
        if self in self.hypervisor.domains:
            self.hypervisor.domains.remove(self)
