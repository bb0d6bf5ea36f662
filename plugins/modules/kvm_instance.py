#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kvm_instance
short_description: KVM/QEMU virtual machines (libvirt domains), declared
version_added: 0.1.0
description:
  - Manages a virtual machine as a libvirt domain through the libvirt Python bindings on the host, from options
    (no domain XML to write) - its CPUs, memory, local disks, cloud-init seed, NICs on Linux bridges, direct kernel
    boot, serial console log, metadata, autostart and whether it runs. Disks and the seed are local files or
    images in Ceph RBD (attached by QEMU's own RBD client with a cephx key kept in a libvirt secret).
  - "The module owns part of the domain's definition: the domain type, name, C(<vcpu>), C(<memory>), the kernel,
    initrd and command line, the C(<disk device='disk'>) elements, the C(<interface type='bridge'>) elements, the
    first serial port and the metadata element in its own namespace C(https://hardway.cloud/xmlns/instance/1).
    Only that part is compared, changed and shown in the diff; what libvirt adds (uuid, device addresses,
    controllers, aliases, default devices, seclabels) and anything else in the definition is left as it is."
  - An option left out leaves that part of an existing VM as it is (a new VM gets 1 vCPU, 512 MiB and type
    C(kvm)); so a task with just I(name) and I(state) starts, stops or removes a VM without restating it.
  - Changes to an existing VM are written into its persistent definition. When the VM runs they are also applied
    to it where libvirt can do that live - metadata, disks and NICs added at the end of their lists (hot-plug),
    disks and NICs removed from the end (unplug, which the guest must allow), a NIC moved to another bridge. For
    the rest (vCPUs, memory, CPU model, kernel, a changed disk) I(needs_restart) is returned C(true), and keeps
    being returned until the VM is restarted, e.g. with I(state=restarted); with I(apply=restart) the module
    restarts the VM itself when that is needed.
  - "MAC addresses: an interface without I(mac) keeps the MAC its position has in the existing VM; a new one gets
    a MAC derived from the instance's name and the interface's index: C(02) followed by the first five bytes of
    SHA-256 of C(NAME/INDEX) (e.g. C(web1/0)), a locally administered unicast address that is the same on every run
    and every host."
  - Where the URI is a local QEMU one (C(qemu:///system), C(qemu:///session)), files (disks, seed, kernel, initrd,
    the serial log's directory) and bridges are checked on the host before anything is defined, and a missing one
    fails naming the option (C(disks[1].path), C(interfaces[0].bridge)); so are the RBD images of disks new to the
    definition (C(disks[0].rbd.image)), through the Ceph client configuration in I(ceph).
  - A NIC hot-plugged into a running VM is registered with the port security of the
    P(hardway.cloud.network#role) role where the host has it (C(/usr/libexec/hardway/port-security)); the
    P(hardway.cloud.hypervisor#role) role's libvirt hook does the same when VMs start and stop.
  - Check mode plans and changes nothing. With C(--diff) the owned part of the definition before and after is
    returned as XML.
  - "A batch (I(instances)) is one task and one libvirt connection for many VMs, e.g. all the VMs of a hypervisor.
    Every entry is planned before any is changed, so bad input, a missing file, bridge or RBD image in any entry
    fails the task naming the entry's option (C(instances[3].memory)) and nothing is changed. Then the entries
    are converged in order; when one fails, the ones before it are done and reported in I(instances), the ones
    after it are not touched, and I(failed_entry) says which one failed."
author: hardway.cloud developers (!UNKNOWN)
extends_documentation_fragment:
  - hardway.cloud.attributes
options:
  name:
    description:
      - The domain's name, unique on the host.
      - Letters, digits, C(_), C(.) and C(-), starting with a letter, digit or C(_).
      - Exactly one of I(name) and I(instances) is required.
    type: str
  instances:
    description:
      - Many VMs in one task, instead of I(name). Each entry is a dict of the options of one VM - I(name) and any
        of the other options but I(uri) and I(timeout) - or just a name (a string).
      - An option an entry leaves out (or sets to null) is the top level's, which has the default; so what the
        VMs share (I(virt_type), I(ceph), I(shutdown_timeout), I(state=absent) to remove them) is given once.
      - A VM may be listed once. The results (I(instances)) are in the same order. An empty list does nothing.
    type: list
    elements: raw
  state:
    description:
      - C(present) defines the VM and leaves it running or not as it is. C(running) defines and starts it (resumes
        it when paused). C(stopped) defines it and shuts it down (ACPI, then off after I(shutdown_timeout)).
        C(paused) defines it and pauses it (starting it paused when it is off). C(restarted) defines it and shuts
        it down (as for C(stopped)) and starts it again, always a change.
      - C(absent) turns a running VM off at once and removes its definition, with its managed save image, NVRAM
        and snapshot metadata. Its disks are removed only with I(undefine_volumes).
    type: str
    choices: [present, running, stopped, paused, restarted, absent]
    default: present
  uri:
    description: The libvirt connection URI.
    type: str
    default: qemu:///system
  timeout:
    description:
      - Seconds libvirt may take to answer. Opening the connection fails after that long, and once it is open,
        libvirt's keepalive closes it when the daemon stops answering for about that long, so a hung libvirtd fails
        the task instead of stalling the run.
      - Not how long an operation may take (see I(shutdown_timeout) and I(wait_timeout)); a busy daemon still
        answers keepalive probes.
    type: int
    default: 30
  virt_type:
    description:
      - The domain type, C(kvm) (hardware virtualisation) or C(qemu) (TCG, software emulation, for hosts where KVM
        is not usable).
      - Left out, a new VM gets C(kvm) and an existing one keeps its type.
    type: str
    choices: [kvm, qemu]
  vcpus:
    description: Number of virtual CPUs. Left out, a new VM gets 1 and an existing one keeps its count.
    type: int
  cpu_model:
    description:
      - The CPU the VM sees - C(host-passthrough) (the host's CPU as it is; fastest, but live migration only
        between identical hosts), C(host-model) (libvirt's stable rendering of the host's CPU), C(maximum), or a
        named model such as C(Haswell-noTSX) or C(qemu64), which must be usable on the host.
      - Left out, a new C(kvm) VM gets C(host-model) and a new C(qemu) VM QEMU's default; an existing VM keeps its
        CPU. Checked against libvirt's domain capabilities of the host.
    type: str
  memory:
    description:
      - Memory, in MiB (an integer) or with a binary unit (C(512M), C(1G), C(1.5G); 1G is 1024 MiB), a whole number
        of MiB more than 0.
      - Left out, a new VM gets 512 MiB and an existing one keeps its memory.
    type: raw
  disks:
    description:
      - The VM's disks, in order (C(vda), C(vdb), ... on virtio; C(sda), ... on sata and scsi). Each is a local file
        or block device (I(path)) or an RBD image (I(rbd)). The list is the whole set of disks; left out, an
        existing VM keeps its disks.
    type: list
    elements: dict
    suboptions:
      path:
        description:
          - Absolute path of the image file or block device (under C(/dev/)) on the host; it must exist.
          - Exactly one of I(path) and I(rbd).
        type: str
      rbd:
        description:
          - An image in Ceph RBD (e.g. a clone made by M(hardway.cloud.ceph_rbd_volume)), attached through QEMU's
            RBD client as I(ceph) says. Always raw. Images in a RADOS namespace are not supported (libvirt cannot
            name them).
        type: dict
        suboptions:
          pool:
            description: The pool.
            type: str
            required: true
          image:
            description: The image.
            type: str
            required: true
      format:
        description: The image's format (RBD images are raw).
        type: str
        choices: [raw, qcow2]
        default: raw
      bus:
        description: The disk bus.
        type: str
        choices: [virtio, sata, scsi]
        default: virtio
      readonly:
        description: Attach the disk read-only.
        type: bool
        default: false
      boot_order:
        description:
          - The disk's place in the firmware's boot order (1 first). Irrelevant with I(kernel) (direct kernel
            boot). Each value at most once.
        type: int
  seed:
    description:
      - A cloud-init NoCloud seed image (e.g. from M(hardway.cloud.cloudinit_seed)), attached as a read-only raw
        virtio disk after the disks of I(disks) - a path on the host, or a dict with I(path) or with
        I(rbd) (C({pool, image})) as in I(disks).
    type: raw
  ceph:
    description:
      - How QEMU and the module reach Ceph for RBD disks and the seed.
    type: dict
    default: {}
    suboptions:
      user:
        description: The cephx user QEMU connects as, without or with C(client.).
        type: str
        default: hypervisor
      secret:
        description:
          - The libvirt secret holding that user's key, by UUID or usage name. The
            P(hardway.cloud.hypervisor#role) role defines it with usage C(client.hypervisor secret).
          - Defaults to C(client.USER secret).
        type: str
      monitors:
        description:
          - Monitor addresses written into the disks' definition (C(host), C(host:port), C([ipv6]:port)). Left
            empty, QEMU reads them from the host's C(/etc/ceph/ceph.conf) when it opens the image, so a changed
            monitor set needs no change of the VMs.
        type: list
        elements: str
        default: []
      conf:
        description: The cluster's configuration on the host, used to check that the RBD images exist and for
          I(undefine_volumes).
        type: path
        default: /etc/ceph/ceph.conf
      keyring:
        description: The keyring of I(user) for those checks; by default librados looks in its usual places
          (C(/etc/ceph/ceph.client.USER.keyring)). The key is never read by the module itself.
        type: path
      timeout:
        description: Seconds to wait for the cluster in those checks.
        type: int
        default: 30
  interfaces:
    description:
      - The VM's NICs, in order, each on a Linux bridge of the host, model virtio. The tap devices are named by
        libvirt. The list is the whole set of bridge NICs; left out, an existing VM keeps its NICs.
    type: list
    elements: dict
    suboptions:
      bridge:
        description: The bridge the NIC is plugged into; it must exist on the host.
        type: str
        required: true
      mac:
        description:
          - The NIC's MAC address, unicast. Left out, see the description for the MAC the NIC gets.
        type: str
      prefix:
        description:
          - The network's IPv6 /64 prefix, when known, to return the NIC's SLAAC (EUI-64) address in
            I(interfaces). Not stored in the definition.
        type: str
  kernel:
    description: Path of a kernel on the host to boot directly (no boot loader). Left out, an existing VM keeps its.
    type: str
  initrd:
    description: Path of an initrd on the host, with I(kernel).
    type: str
  cmdline:
    description: The kernel command line, with I(kernel).
    type: str
  metadata:
    description:
      - Facts about the VM (tenant, networks, image, flavor, labels) stored as JSON in the domain's C(<metadata>)
        under the namespace C(https://hardway.cloud/xmlns/instance/1), where later runs and the inventory read them
        back. Replaces what was stored; C({}) stores an empty dict. Left out, the stored metadata is kept.
    type: dict
  autostart:
    description: Whether libvirt starts the VM when the host boots. Left out, it is left as it is.
    type: bool
  serial_log:
    description:
      - Path of a file on the host that the VM's first serial port (its console, C(console=ttyS0)) is written to,
        appended across boots. Its directory must exist. Left out, an existing VM keeps its serial port (a new one
        gets a pty one).
    type: str
  apply:
    description:
      - What to do with changes to a running VM that libvirt cannot apply live. C(live) applies what it can and
        reports the rest with I(needs_restart). C(restart) restarts the VM (graceful shutdown as for
        I(state=stopped), then start) when that is needed; with I(state=present) or I(state=running) only.
    type: str
    choices: [live, restart]
    default: live
  undefine_volumes:
    description:
      - With I(state=absent), also remove the VM's disks and seed - local files (never block devices) and RBD
        images (which must have no snapshots). A volume another VM on the host also uses is kept.
      - Needs a local URI. RBD images are removed as I(ceph) says, once QEMU has let go of them.
    type: bool
    default: false
  shutdown_timeout:
    description:
      - Seconds to wait for a graceful (ACPI) shutdown for I(state=stopped) and I(state=restarted), after which the
        VM is turned off. C(0) turns it off at once.
    type: int
    default: 60
  wait:
    description: For I(state=running) and I(state=restarted), wait until libvirt reports the VM running.
    type: bool
    default: true
  wait_timeout:
    description: Seconds I(wait) waits at most.
    type: int
    default: 60
requirements:
  - libvirt Python bindings on the host (Debian package python3-libvirt)
seealso:
  - module: hardway.cloud.cloudinit_seed
  - module: hardway.cloud.ceph_rbd_volume
  - name: libvirt domain XML format
    description: What the definition the module writes means.
    link: https://libvirt.org/formatdomain.html
notes:
  - vCPUs and memory are changed only at a restart (no hot-plug of CPUs or memory).
"""

EXAMPLES = r"""
- name: A tenant VM from its cloned disk and seed, running, started with the host
  hardway.cloud.kvm_instance:
    name: web1
    state: running
    virt_type: "{{ hardway_virt_type | default('kvm') }}"
    vcpus: 2
    memory: 1G
    disks:
      - {path: /var/lib/libvirt/images/web1.qcow2, format: qcow2}
    seed: /var/lib/libvirt/images/web1-seed.iso
    interfaces:
      - {bridge: br100, prefix: "2001:db8:100::/64"}
    serial_log: /var/log/libvirt/qemu/web1-serial.log
    metadata:
      tenant: acme
      flavor: small
      networks: [{name: net100, prefix: "2001:db8:100::/64"}]
    autostart: true
  register: web1

- name: A tenant VM whose root disk and seed are RBD images
  hardway.cloud.kvm_instance:
    name: db1
    state: running
    vcpus: 2
    memory: 2G
    cpu_model: host-passthrough
    disks:
      - rbd: {pool: vms, image: db1-root}
    seed:
      rbd: {pool: vms, image: db1-seed}
    ceph:
      user: hypervisor
    interfaces:
      - {bridge: br100}
    kernel: /var/lib/hardway/images/debian-12/vmlinuz
    initrd: /var/lib/hardway/images/debian-12/initrd.img
    cmdline: console=ttyS0 root=/dev/vda rw

- name: Its address, known without asking the VM
  ansible.builtin.debug:
    msg: "{{ web1.interfaces[0].address }}"

- name: A small guest booted directly from a kernel and an initrd, under TCG
  hardway.cloud.kvm_instance:
    name: probe1
    state: running
    virt_type: qemu
    memory: 256
    kernel: /var/lib/libvirt/images/probe1/vmlinuz
    initrd: /var/lib/libvirt/images/probe1/initrd.img
    cmdline: console=ttyS0 quiet
    interfaces:
      - {bridge: br100, mac: "52:54:00:00:7e:01"}
    serial_log: /var/lib/libvirt/images/probe1/serial.log

- name: More memory; takes effect at the next restart
  hardway.cloud.kvm_instance:
    name: web1
    memory: 2G
  register: grown

- name: Restart it when the change needs it
  hardway.cloud.kvm_instance:
    name: web1
    state: restarted
    shutdown_timeout: 120
  when: grown.needs_restart

- name: A second NIC, hot-plugged into the running VM
  hardway.cloud.kvm_instance:
    name: web1
    interfaces:
      - {bridge: br100}
      - {bridge: br200}

- name: Remove the VM (its disks stay)
  hardway.cloud.kvm_instance:
    name: web1
    state: absent

- name: Remove a VM with its RBD root disk and seed
  hardway.cloud.kvm_instance:
    name: db1
    state: absent
    undefine_volumes: true

- name: All the VMs of a hypervisor in one task; what they share is given once
  hardway.cloud.kvm_instance:
    virt_type: kvm
    state: running
    autostart: true
    ceph: {user: hypervisor}
    instances:
      - name: web1
        vcpus: 2
        memory: 2G
        disks: [{rbd: {pool: vms, image: web1-root}}]
        seed: {rbd: {pool: vms, image: web1-seed}}
        interfaces: [{bridge: br100}]
      - name: web2
        memory: 1G
        disks: [{rbd: {pool: vms, image: web2-root}}]
        seed: {rbd: {pool: vms, image: web2-seed}}
        interfaces: [{bridge: br100}]
  register: vms

- name: Remove two VMs (their disks stay)
  hardway.cloud.kvm_instance:
    instances: [old1, old2]
    state: absent
"""

RETURN = r"""
instances:
  description:
    - One result for each entry of I(instances), in the order given - with I(name), the return values of a single
      VM (I(changed), I(actions), I(uuid), I(state), I(needs_restart), I(autostart), I(interfaces), I(xml)). When
      an entry fails, the entries before it, and the failed one as far as it got (with I(failed) and I(msg)).
    - With I(instances), the top-level I(changed) and I(needs_restart) are true when they are for any entry, and
      the single VM's other return values are not returned.
  returned: with I(instances)
  type: list
  elements: dict
  sample: [{name: web1, changed: true, actions: [define web1, start web1], state: running, needs_restart: false,
            uuid: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, autostart: true, interfaces: [], xml: "<domain>...</domain>"}]
failed_entry:
  description: The index in I(instances) of the entry that failed or was refused (C(instances[INDEX]) in the message).
  returned: when an entry of I(instances) fails
  type: int
  sample: 3
uuid:
  description: The domain's UUID; null when it does not exist (or, in check mode, would be new).
  returned: without I(instances)
  type: str
  sample: 4dea22b3-1d52-d8f3-2516-782e98ab3fa0
state:
  description: What the VM is after the run (would be, in check mode) - C(running), C(paused), C(stopped),
    C(crashed), C(shutdown) (shutting down), C(pmsuspended), C(blocked), C(absent).
  returned: without I(instances)
  type: str
  sample: running
interfaces:
  description: The VM's bridge NICs, in order.
  returned: without I(instances)
  type: list
  elements: dict
  contains:
    bridge:
      description: The bridge.
      type: str
      sample: br100
    mac:
      description: The MAC address.
      type: str
      sample: 02:9b:2e:5c:18:c4
    prefix:
      description: The prefix the entry gave.
      type: str
      returned: when the entry has a prefix
      sample: 2001:db8:100::/64
    address:
      description: The NIC's SLAAC (EUI-64) address in I(prefix).
      type: str
      returned: when the entry has a prefix
      sample: 2001:db8:100:0:9b:2eff:fe5c:18c4
needs_restart:
  description: Whether the running VM differs from its definition in the owned part (other than metadata), so
    that a restart is needed for the definition to take effect.
  returned: always
  type: bool
  sample: false
autostart:
  description: Whether the VM starts with the host.
  returned: when the VM exists
  type: bool
  sample: true
actions:
  description: What the run did (in check mode, would do), in order.
  returned: without I(instances)
  type: list
  elements: str
  sample: ["define web1", "start web1"]
xml:
  description: The VM's persistent definition after the run (in check mode, the one that would be defined);
    empty when it does not exist.
  returned: without I(instances)
  type: str
  sample: "<domain type='kvm'>...</domain>"
"""

import os
import time
from functools import partial

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.hardway.cloud.plugins.module_utils import libvirt_domain as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import (
    HardwayModule, ModuleError, ParameterError, batch_entries, entry_options, within)
from ansible_collections.hardway.cloud.plugins.module_utils.ceph import HAS_RADOS, Clusters, connection_options
from ansible_collections.hardway.cloud.plugins.module_utils.config_file import ConfigFile
from ansible_collections.hardway.cloud.plugins.module_utils.libvirt_connection import open_connection

try:
    import libvirt
    HAS_LIBVIRT = True
except ImportError:
    HAS_LIBVIRT = False

try:
    import rbd
    HAS_RBD = True
except ImportError:
    HAS_RBD = False

STATE_NAMES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "stopped", 6: "crashed",
               7: "pmsuspended"}
ACTIVE = ("running", "paused", "blocked", "shutdown", "pmsuspended", "crashed")
POLL = 0.25
# libvirt errors that mean "not while it runs" (the change then waits for a restart)
LIVE_UNSUPPORTED = tuple(getattr(libvirt, code) for code in (
    "VIR_ERR_NO_SUPPORT", "VIR_ERR_OPERATION_UNSUPPORTED", "VIR_ERR_CONFIG_UNSUPPORTED", "VIR_ERR_OPERATION_TIMEOUT")
    if HAS_LIBVIRT and hasattr(libvirt, code))
# the network role's port security helper: a hot-plugged NIC is registered
# here (libvirt's hook only sees VMs start and stop)
PORT_SECURITY = "/usr/libexec/hardway/port-security"
# where the hypervisor role's libvirt hook remembers each running domain's
# registered ports ("TAP MAC" lines in a file named by the domain's UUID), to
# revoke them when it stops: hot-plugged ports are remembered there too
PORT_RECORDS = "/run/hardway/port-security"
# how long a removed VM's RBD image may still show QEMU's watch
UNWATCH_SECONDS = 45


def _is_bridge(name):
    return os.path.isdir("/sys/class/net/%s/bridge" % name)


def local_uri(uri):
    """Whether the URI reaches this host's QEMU driver (so its files and bridges are this host's)."""
    return uri.split("?")[0] in ("qemu:///system", "qemu:///session", "qemu+unix:///system", "qemu+unix:///session")


ARGUMENT_SPEC = dict(
    name=dict(type="str"),
    state=dict(type="str", default="present",
               choices=["present", "running", "stopped", "paused", "restarted", "absent"]),
    uri=dict(type="str", default="qemu:///system"),
    virt_type=dict(type="str", choices=["kvm", "qemu"]),
    vcpus=dict(type="int"),
    memory=dict(type="raw"),
    cpu_model=dict(type="str"),
    disks=dict(type="list", elements="dict", options=dict(
        path=dict(type="str"),
        rbd=dict(type="dict", options=dict(
            pool=dict(type="str", required=True),
            image=dict(type="str", required=True),
        )),
        format=dict(type="str", default="raw", choices=["raw", "qcow2"]),
        bus=dict(type="str", default="virtio", choices=["virtio", "sata", "scsi"]),
        readonly=dict(type="bool", default=False),
        boot_order=dict(type="int"),
    ), mutually_exclusive=[["path", "rbd"]], required_one_of=[["path", "rbd"]]),
    seed=dict(type="raw"),
    ceph=dict(type="dict", default={}, options=dict(
        user=dict(type="str", default="hypervisor"),
        secret=dict(type="str", no_log=False),
        monitors=dict(type="list", elements="str", default=[]),
        conf=dict(type="path", default="/etc/ceph/ceph.conf"),
        keyring=dict(type="path", no_log=False),
        timeout=dict(type="int", default=30),
    )),
    interfaces=dict(type="list", elements="dict", options=dict(
        bridge=dict(type="str", required=True),
        mac=dict(type="str"),
        prefix=dict(type="str"),
    )),
    kernel=dict(type="str"),
    initrd=dict(type="str"),
    cmdline=dict(type="str"),
    metadata=dict(type="dict"),
    autostart=dict(type="bool"),
    serial_log=dict(type="str"),
    apply=dict(type="str", default="live", choices=["live", "restart"]),
    undefine_volumes=dict(type="bool", default=False),
    shutdown_timeout=dict(type="int", default=60),
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=60),
    timeout=dict(type="int", default=30),
    instances=dict(type="list", elements="raw"),
)
# an entry of instances: every option of one instance but the connection
INSTANCE_OPTIONS = entry_options(ARGUMENT_SPEC, exclude=("uri", "timeout", "instances"), required=("name",))


class KvmInstance(HardwayModule):
    argument_spec = ARGUMENT_SPEC
    module_kwargs = dict(mutually_exclusive=[("name", "instances")], required_one_of=[("name", "instances")])

    def run(self):
        if not HAS_LIBVIRT:
            raise ModuleError(missing_required_lib("libvirt-python (Debian package python3-libvirt)"))
        batch = self.params["instances"] is not None
        if batch:
            entries = self._entries()
        else:
            _check_timeouts(self.params)
            entries = [(None, self.params, logic.wanted(self.params))]
        if self.params["timeout"] < 1:
            raise ParameterError("timeout", "%d: must be 1 or more seconds" % self.params["timeout"])
        # libvirt prints every error on stderr unless a handler takes it
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        conn = open_connection(self.params["uri"], self.params["timeout"])
        host = self.module if local_uri(self.params["uri"]) else None
        clusters = Clusters()
        try:
            if not batch:
                Instance(conn, entries[0][2], self.params, self.check_mode, self.result, host, clusters).converge()
            else:
                self._converge_batch(conn, entries, host, clusters)
        finally:
            if not batch:
                self._diff_from_result()
            clusters.close()
            conn.close()

    def _entries(self):
        """(where, parameters, wanted instance) of each entry of instances,
        all checked before any is used."""
        entries, seen = [], {}
        self.result["instances"] = []
        try:
            given = batch_entries(self.module, "instances", INSTANCE_OPTIONS)
        except ParameterError as exc:
            self.result["failed_entry"] = exc.index
            raise
        for index, (where, params) in enumerate(given):
            try:
                _check_timeouts(params)
                want = logic.wanted(params)
                if want["name"] in seen:
                    raise ParameterError("name", "lists instance %s a second time (first as %s)"
                                         % (want["name"], seen[want["name"]]))
            except ParameterError as exc:
                self.result["failed_entry"] = index
                raise within(where, exc, params.get("name"))
            seen[want["name"]] = where
            entries.append((where, params, want))
        return entries

    def _converge_batch(self, conn, entries, host, clusters):
        """instances: every entry planned first (in check mode, so bad input or
        a missing file, bridge or image of any entry fails the task before
        anything changes), then converged in order, up to the first that fails."""
        passes = [True] if self.check_mode else [True, False]
        for check_mode in passes:
            results = []
            for index, (where, params, want) in enumerate(entries):
                result = {"changed": False}
                try:
                    Instance(conn, want, params, check_mode, result, host, clusters).converge()
                except (ParameterError, ModuleError) as exc:
                    self.result["failed_entry"] = index
                    if check_mode and isinstance(exc, ParameterError):
                        # nothing is changed yet
                        raise within(where, exc, want["name"])
                    if not check_mode:
                        # the entries before it are done, the ones after it untouched; it, as far as it got
                        result.update(name=want["name"], failed=True, msg=str(exc))
                        self._report_batch(results + [result])
                    details = dict(getattr(exc, "details", {}))
                    if isinstance(exc, ParameterError):
                        details["parameter"] = exc.parameter
                    if details.get("parameter"):
                        details["parameter"] = "%s.%s" % (where, details["parameter"])
                    raise ModuleError("%s (%s): %s" % (where, want["name"], exc), **details)
                result["name"] = want["name"]
                results.append(result)
        self._report_batch(results)

    def _report_batch(self, results):
        diffs = [(result["name"], result.pop("_before", None), result.pop("_after", None)) for result in results]
        self.result["instances"] = results
        self.result["changed"] = any(result["changed"] for result in results)
        self.result["needs_restart"] = any(result.get("needs_restart") for result in results)
        changed = [diff for diff, result in zip(diffs, results) if result["changed"]]
        self.set_diff("".join("<!-- %s -->\n%s" % (name, before) for name, before, _after in changed if before),
                      "".join("<!-- %s -->\n%s" % (name, after) for name, _before, after in changed if after))

    def _diff_from_result(self):
        before, after = self.result.pop("_before", None), self.result.pop("_after", None)
        if before is not None or after is not None:
            self.set_diff(before or "", after or "")


def _check_timeouts(params):
    for key in ("shutdown_timeout", "wait_timeout"):
        if params[key] < 0:
            raise ParameterError(key, "%d: must be 0 or more seconds" % params[key])


class Instance(object):
    """One domain on one connection: read, plan, apply (unless check mode),
    report into ``result``. ``host`` is the module when the URI is this
    host's (files, bridges, RBD images and port security are checked and
    handled here), else None."""

    def __init__(self, conn, want, params, check_mode, result, host=None, clusters=None):
        self.conn = conn
        self.clusters = clusters if clusters is not None else Clusters()
        self.want = want
        self.params = params
        self.check_mode = check_mode
        self.result = result
        self.host = host
        self.actions = result.setdefault("actions", [])
        self.planned_state = None
        self.domain = self._lookup()

    def _lookup(self):
        try:
            return self.conn.lookupByName(self.want["name"])
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise ModuleError("looking up domain %s: %s" % (self.want["name"], exc))

    def _call(self, method, *args):
        return getattr(self.domain, method)(*args)

    def _state(self):
        if self.domain is None:
            return "absent"
        return STATE_NAMES.get(self.domain.state()[0], "nostate")

    def _do(self, action, call, parameter=None):
        self.actions.append(action)
        self.result["changed"] = True
        if self.check_mode:
            return None
        try:
            return call()
        except libvirt.libvirtError as exc:
            message = str(exc)
            parameter = parameter or logic.parameter_of_error(message, self.want)
            details = {"parameter": parameter} if parameter else {}
            prefix = "%s: " % parameter if parameter else ""
            raise ModuleError("%s%s failed: %s" % (prefix, action, message), **details)

    def converge(self):
        state = self.params["state"]
        name = self.want["name"]
        if state == "absent":
            return self._absent()
        if self.host is not None:
            problem = logic.host_problems(self.want, os.path.exists, _is_bridge)
            if problem:
                raise problem
        before_xml = self.domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if self.domain else None
        before = logic.owned(before_xml) if before_xml else None
        target = logic.resolve(self.want, before)
        self._check_new_parts(before, target)
        new_xml = logic.apply(before_xml or logic.skeleton(name), target)
        after = logic.owned(new_xml)
        self.result["_before"], self.result["_after"] = logic.render(before), logic.render(after)
        if before != after:
            self.domain = self._do("define %s" % name if before is None else "redefine %s" % name,
                                   partial(self.conn.defineXML, new_xml)) or self.domain
            running = before and self.domain is not None and self.domain.isActive()
            if running and state in ("present", "running", "paused"):
                self._change_live(after)
        autostart = self.params["autostart"]
        if autostart is not None and (self.domain is None or bool(self.domain.autostart()) != autostart):
            self._do("autostart %s %s" % ("on" if autostart else "off", name),
                     partial(self._call, "setAutostart", 1 if autostart else 0), "autostart")
        if self.params["apply"] == "restart" and state in ("present", "running") and self._restart_needed(after):
            state = "restarted"
        self._run_state(state)
        self._report(after, new_xml)

    # checks that need the host or the cluster, only for what is new

    def _check_new_parts(self, before, target):
        model = target.get("cpu_model")
        if model is not None and model != (before or {}).get("cpu_model"):
            self._check_cpu_model(model, target["type"])
        vcpus = target.get("vcpus")
        if vcpus is not None and vcpus != (before or {}).get("vcpus"):
            self._check_vcpus(vcpus, target["type"])
        known = set(logic.volumes(before))
        new = [(parameter, pool, image) for parameter, pool, image in logic.rbd_disks(self.want)
               if ("rbd", pool, image) not in known]
        if new and self.host is not None:
            self._check_rbd_images(new)

    def _domain_capabilities(self, virt_type):
        """libvirt's domain capabilities XML for ``virt_type`` domains, or None
        for a driver without them (the test driver: libvirt checks at start)."""
        try:
            return self.conn.getDomainCapabilities(None, None, None, virt_type)
        except libvirt.libvirtError:
            return None

    def _check_vcpus(self, vcpus, virt_type):
        caps = self._domain_capabilities(virt_type)
        most = logic.max_vcpus(caps) if caps else None
        if most is not None and vcpus > most:
            raise ParameterError("vcpus", "%d is more than %s domains can have on this host (%d)"
                                 % (vcpus, virt_type, most))

    def _check_cpu_model(self, model, virt_type):
        caps = self._domain_capabilities(virt_type)
        if caps is None:
            return
        supported = logic.cpu_models(caps)
        if model in logic.CPU_MODES:
            if model not in supported["modes"]:
                raise ParameterError("cpu_model", "%s is not supported by %s domains on this host (it offers: %s)"
                                     % (model, virt_type, ", ".join(supported["modes"]) or "none"))
        elif supported["models"] and model not in supported["models"]:
            raise ParameterError("cpu_model", "%s is not a CPU model %s domains can use on this host (usable: %s)"
                                 % (model, virt_type, ", ".join(sorted(supported["models"]))))

    def _ceph_options(self):
        ceph = self.params.get("ceph") or {}
        try:
            return connection_options({"conf": ceph.get("conf") or "/etc/ceph/ceph.conf",
                                       "keyring": ceph.get("keyring"), "user": ceph.get("user") or "hypervisor",
                                       "cluster": "ceph", "timeout": ceph.get("timeout") or 30})
        except ParameterError as exc:
            raise ParameterError("ceph." + exc.parameter, exc.message)

    def _check_rbd_images(self, disks):
        """The RBD images of new disks exist (QEMU would only fail at start)."""
        if not (HAS_RADOS and HAS_RBD):
            self.host.warn("the RBD images of the disks were not checked: the host lacks the rados and rbd Python "
                           "bindings (python3-rados, python3-rbd)")
            return
        cluster = self.clusters.get(self._ceph_options())
        for parameter, pool, image in disks:
            ioctx = cluster.ioctx(pool, parameter=parameter + ".pool")
            try:
                rbd.Image(ioctx, image, read_only=True).close()
            except rbd.ImageNotFound:
                raise ParameterError(parameter + ".image", "RBD image %s/%s does not exist in %s"
                                     % (pool, image, cluster.where()))
            finally:
                ioctx.close()

    # a running VM

    def _change_live(self, after):
        """Bring the running VM's devices and metadata to ``after`` where
        libvirt can do it live; the rest waits for a restart (needs_restart)."""
        name = self.want["name"]
        live_xml = self.domain.XMLDesc(0)
        live = logic.owned(live_xml)
        for op, kind, index in logic.live_changes(live, after):
            noun = "disk" if kind == "disks" else "interface"
            if op == "attach":
                item = after[kind][index]
                if self._live("attach %s %d to running %s" % (noun, index, name), "attachDeviceFlags",
                              logic.device_xml(kind, item), "%s[%d]" % (kind, index)) and kind == "interfaces":
                    self._port_security("allow", item["mac"])
            elif op == "detach":
                if self._live("detach %s %d from running %s" % (noun, index, name), "detachDeviceFlags",
                              logic.live_device_xml(live_xml, kind, index), kind) and kind == "interfaces":
                    self._port_security("revoke", live[kind][index]["mac"], live_xml)
            else:
                item = after[kind][index]
                if self._live("move interface %d of running %s to %s" % (index, name, item["bridge"]),
                              "updateDeviceFlags", logic.device_xml(kind, item), "%s[%d].bridge" % (kind, index)):
                    self._port_security("revoke", item["mac"], live_xml)
                    self._port_security("allow", item["mac"])
        if live["metadata"] != after["metadata"]:
            self._set_live_metadata(after["metadata"])

    def _live(self, action, method, xml, parameter):
        """A device change on the running VM; False when libvirt cannot do it
        live here (it then waits for a restart, and needs_restart says so)."""
        try:
            self._do(action, partial(self._call, method, xml, libvirt.VIR_DOMAIN_AFFECT_LIVE), parameter)
        except ModuleError as exc:
            cause = exc.__context__
            # QEMU's "Bus 'pci.0' does not support hotplugging" (a VM without ACPI) comes as an internal error
            unsupported = isinstance(cause, libvirt.libvirtError) and (
                cause.get_error_code() in LIVE_UNSUPPORTED or "hotplug" in str(cause).lower())
            if not unsupported:
                raise
            self.actions[-1] = "%s: not possible live (%s); applied at the next restart" % (action, cause)
            return False
        return not self.check_mode

    def _port_security(self, action, mac, xml=None):
        """Register (allow) or unregister (revoke) a NIC's tap with the
        network role's port security, where the host has it."""
        if self.check_mode or self.host is None or not os.access(PORT_SECURITY, os.X_OK):
            return
        tap, bridge = logic.taps(xml or self.domain.XMLDesc(0)).get(mac, (None, None))
        if tap is None:
            return
        argv = [PORT_SECURITY, action, tap, mac] + ([bridge] if action == "allow" else [])
        rc, _out, err = self.host.run_command(argv)
        if rc != 0:
            raise ModuleError("port security %s of %s (%s) failed: %s" % (action, tap, mac, err.strip()))
        if not os.path.isdir(PORT_RECORDS):
            os.makedirs(PORT_RECORDS, mode=0o700)
        record = ConfigFile(os.path.join(PORT_RECORDS, self.domain.UUIDString().lower()), mode=0o600)
        with record.locked():
            lines = [line for line in (record.read() or "").splitlines() if line.split() != [tap, mac]]
            if action == "allow":
                lines.append("%s %s" % (tap, mac))
            record.write("".join(line + "\n" for line in lines))

    def _restart_needed(self, after):
        """Whether the VM runs with a configuration other than ``after`` that
        only a restart can apply (in check mode: would, after the live changes)."""
        if self.domain is None or not self.domain.isActive():
            return False
        live = logic.owned(self.domain.XMLDesc(0))
        if self.check_mode:
            live = logic.after_live_changes(live, after, logic.live_changes(live, after))
        return logic.restart_differs(live, after)

    def _set_live_metadata(self, value):
        element = logic.metadata_xml(value) if value is not None else None
        key = logic.METADATA_KEY if value is not None else None

        def call():
            self.domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, key, logic.METADATA_NS,
                                    libvirt.VIR_DOMAIN_AFFECT_LIVE)
        self._do("set metadata of running %s" % self.want["name"], call, "metadata")

    def _run_state(self, state):
        name = self.want["name"]
        current = self._state() if self.domain is not None else "stopped"
        self.planned_state = current
        if state == "running":
            if current == "paused":
                self._do("resume %s" % name, partial(self._call, "resume"))
            elif current != "running":
                self._do("start %s" % name, partial(self._call, "create"))
            self.planned_state = "running"
        elif state == "paused":
            if current == "running":
                self._do("pause %s" % name, partial(self._call, "suspend"))
            elif current != "paused":
                self._do("start %s paused" % name,
                         partial(self._call, "createWithFlags", libvirt.VIR_DOMAIN_START_PAUSED))
            self.planned_state = "paused"
        elif state == "stopped":
            if current not in ("stopped", "absent"):
                self._stop()
            self.planned_state = "stopped"
        elif state == "restarted":
            if current not in ("stopped", "absent"):
                self._stop()
            self._do("start %s" % name, partial(self._call, "create"))
            self.planned_state = "running"
        if state in ("running", "restarted") and self.params["wait"] and not self.check_mode:
            self._wait_for(libvirt.VIR_DOMAIN_RUNNING, self.params["wait_timeout"], "running")

    def _stop(self):
        name = self.want["name"]
        timeout = self.params["shutdown_timeout"]
        if timeout > 0 and self._state() == "running":
            self._do("shut down %s" % name, partial(self._call, "shutdown"))
            if self.check_mode or self._wait_for(libvirt.VIR_DOMAIN_SHUTOFF, timeout, None):
                return
            self.actions.append("no shutdown of %s within %d s" % (name, timeout))
        self._do("turn off %s" % name, self._destroy)

    def _destroy(self):
        try:
            self.domain.destroy()
        except libvirt.libvirtError as exc:
            if self.domain.isActive():
                raise exc

    def _wait_for(self, wanted_state, timeout, fail_as):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.domain.state()[0] == wanted_state:
                    return True
            except libvirt.libvirtError:
                pass
            if time.monotonic() >= deadline:
                if fail_as:
                    raise ModuleError("domain %s is not %s after %d s (it is %s)"
                                      % (self.want["name"], fail_as, timeout, self._state()))
                return False
            time.sleep(POLL)

    # removal

    def _absent(self):
        name = self.want["name"]
        if self.domain is not None:
            before_xml = self.domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            before = logic.owned(before_xml)
            self.result["_before"], self.result["_after"] = logic.render(before), ""
            doomed = self._volumes_to_remove(before) if self.params["undefine_volumes"] else []
            if self.domain.isActive():
                self._do("turn off %s" % name, self._destroy)
            self._do("undefine %s" % name, self._undefine)
            for volume in doomed:
                self._remove_volume(volume)
        self.result.update(uuid=None, state="absent", interfaces=[], needs_restart=False, xml="")

    def _undefine(self):
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        fallbacks = [flags, libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA]
        for index, attempt in enumerate(fallbacks):
            try:
                self.domain.undefineFlags(attempt)
                return
            except libvirt.libvirtError as exc:
                # a driver that does not know some flags (no NVRAM, no checkpoints)
                unsupported = exc.get_error_code() in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT)
                if not unsupported or index == len(fallbacks) - 1:
                    raise

    def _volumes_to_remove(self, before):
        """The VM's volumes that no other domain of the connection uses."""
        mine = logic.volumes(before)
        if mine and self.host is None:
            raise ParameterError("undefine_volumes", "volumes are removed only where the module runs on the "
                                                     "hypervisor itself (a local qemu:/// URI)")
        used = set()
        for other in self.conn.listAllDomains(0):
            if other.UUIDString() != self.domain.UUIDString():
                used.update(logic.volumes(logic.owned(other.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))))
        doomed = []
        for volume in mine:
            if volume in used:
                self.actions.append("keep %s: another VM uses it" % _volume_name(volume))
            elif volume not in doomed:
                doomed.append(volume)
        return doomed

    def _remove_volume(self, volume):
        if volume[0] == "file":
            path = volume[1]
            if not os.path.isfile(path):
                # a block device is never removed, nor something already gone
                if os.path.exists(path):
                    self.actions.append("keep %s: not a regular file" % path)
                return
            self._do("remove volume %s" % path, partial(os.unlink, path), "undefine_volumes")
            return
        if not (HAS_RADOS and HAS_RBD):
            raise ModuleError(missing_required_lib("rados and rbd (python3-rados, python3-rbd)"),
                              parameter="undefine_volumes")
        _kind, pool, image = volume
        ioctx = self.clusters.get(self._ceph_options()).ioctx(pool, parameter="undefine_volumes")
        try:
            try:
                rbd.Image(ioctx, image, read_only=True).close()
            except rbd.ImageNotFound:
                return
            self._do("remove volume %s/%s" % (pool, image), partial(_remove_image, ioctx, pool, image),
                     "undefine_volumes")
        finally:
            ioctx.close()

    def _report(self, after, planned_xml):
        domain = self.domain
        if domain is None:
            # check mode, new instance
            self.result.update(uuid=None, state=self.planned_state, needs_restart=False, xml=planned_xml,
                               autostart=bool(self.params["autostart"]))
        else:
            persistent_xml = planned_xml if self.check_mode else domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            needs_restart = False
            if self.planned_state in ACTIVE and domain.isActive() and \
                    not (self.check_mode and "start %s" % self.want["name"] in self.actions):
                needs_restart = self._restart_needed(after)
            autostart = bool(domain.autostart()) if not self.check_mode or self.params["autostart"] is None \
                else self.params["autostart"]
            self.result.update(uuid=domain.UUIDString(), needs_restart=needs_restart, xml=persistent_xml,
                               state=self.planned_state if self.check_mode else self._state(), autostart=autostart)
        self.result["interfaces"] = logic.interface_facts(after, self.want)


def _volume_name(volume):
    return volume[1] if volume[0] == "file" else "%s/%s" % volume[1:]


def _remove_image(ioctx, pool, image):
    """Remove an RBD image once QEMU's watch on it is gone (a killed QEMU's
    watch lingers until the OSDs time it out)."""
    deadline = time.monotonic() + UNWATCH_SECONDS
    while True:
        try:
            rbd.RBD().remove(ioctx, image)
            return
        except rbd.ImageNotFound:
            return
        except rbd.ImageHasSnapshots:
            raise ModuleError("undefine_volumes: RBD image %s/%s has snapshots; it is kept (remove it with "
                              "hardway.cloud.ceph_rbd_volume and force)" % (pool, image), parameter="undefine_volumes")
        except rbd.ImageBusy:
            if time.monotonic() >= deadline:
                raise ModuleError("undefine_volumes: RBD image %s/%s is still in use %d s after the VM stopped "
                                  "(another client has it open); it is kept" % (pool, image, UNWATCH_SECONDS),
                                  parameter="undefine_volumes")
            time.sleep(1)


def main():
    KvmInstance.main()


if __name__ == "__main__":
    main()
