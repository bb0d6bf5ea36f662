"""A one-host Ceph cluster on a lab host, made by the collection's storage
role (the real bootstrap, not a test double), with the machine as its admin
client: for integration tests and benchmarks that need a cluster. With
``hypervisor=True`` the lab also has hv1, made a hypervisor by the
collection's hypervisor role (libvirt, QEMU's RBD driver, the cephx key
client.hypervisor as a libvirt secret), so guests boot from RBD images."""

import os
import subprocess

from . import lab
from .errors import LabError
from .topology import parse

PLAYBOOK = """\
- name: A one-host Ceph cluster
  hosts: storage
  gather_facts: false
  vars:
    storage_osds: [{file: /var/lib/ceph/osd-files/osd0.img, size: %(size)s}]
    # the lab's disk is shared and fuller than Ceph's default 30 %% warning
    storage_config: {mon: {mon data avail warn: 5}}
  roles:
    - role: hardway.cloud.storage
"""

# the lab inventory's settings for hypervisors (lab hosts write only net.* sysctls)
HYPERVISOR_VARS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                               "inventories", "lab", "group_vars", "hypervisors.yml")
HYPERVISOR_PLAY = """\
- name: A hypervisor of the cluster (TCG guests)
  hosts: hypervisors
  gather_facts: false
  vars_files: [%(vars)s]
  vars:
    hardway_virt_type: qemu
  roles:
    - role: hardway.cloud.hypervisor
"""


def _ssh(state, host, command):
    return subprocess.run(["ssh", "-F", state["ssh_config"], "-o", "BatchMode=yes", host, command],
                          capture_output=True, text=True, timeout=60, check=True).stdout


def up(name, workdir, size="8G", hypervisor=False, log=lambda _msg: None):
    """Bring lab ``name`` up (host stor1, and hv1 with ``hypervisor``),
    converge the roles on it, and write the cluster's ceph.conf and
    client.admin keyring into ``workdir``.
    Returns (lab state, conf path, keyring path). ``lab.down(name)`` removes it."""
    hosts = [{"name": "stor1", "groups": ["storage"]}]
    if hypervisor:
        hosts.append({"name": "hv1", "groups": ["hypervisors"], "devices": ["kvm", "tun"]})
    state = lab.up(parse({"lab": name, "hosts": hosts}), fresh=True, log=log)
    book = os.path.join(workdir, "site.yml")
    with open(book, "w", encoding="utf-8") as out:
        out.write(PLAYBOOK % {"size": size} + (HYPERVISOR_PLAY % {"vars": HYPERVISOR_VARS} if hypervisor else ""))
    log("converging the roles on %s" % name)
    proc = subprocess.run(["ansible-playbook", "-i", state["inventory"], book],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise LabError("the roles did not converge:\n" + proc.stdout[-6000:] + proc.stderr[-2000:])
    paths = []
    for filename in ("ceph.conf", "ceph.client.admin.keyring"):
        path = os.path.join(workdir, filename)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
            out.write(_ssh(state, "stor1", "cat /etc/ceph/" + filename))
        paths.append(path)
    return state, paths[0], paths[1]
