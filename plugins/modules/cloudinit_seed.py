#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cloudinit_seed
short_description: A cloud-init NoCloud seed image (ISO 9660, label cidata) for a VM's first boot
version_added: 0.1.0
description:
  - Builds a NoCloud seed, an ISO 9660 image labelled C(cidata) with the files C(meta-data), C(user-data) and,
    when given, C(network-config) (version 1 or 2) and C(vendor-data), with the pycdlib library (no external
    tools). Attach it to the VM as a disk; cloud-init finds it by its label.
  - The image's bytes depend only on its content (fixed timestamps, sorted names), so the same input gives the same
    image and C(changed=false); a change of content rewrites it (atomically) and returns the new checksum.
  - A I(user_data) dict is rendered as C(#cloud-config) YAML; a string is used as given (a C(#cloud-config)
    document, a script, or another cloud-init part such as a MIME multipart). A cloud-config is checked before
    anything is written, and top-level keys cloud-init does not know are warned about.
  - I(user_data) and I(vendor_data) are not logged, and the diff shows only their top-level keys and a checksum,
    never their values.
  - The image holds secrets as often as not, so a new file is created with mode C(0600) unless I(mode) says
    otherwise.
  - With I(rbd) the seed is written into an RBD image of a Ceph cluster instead of a file, so the VM can start on
    any hypervisor. The RBD image is as large as the seed; a changed seed is written over it in place (one RADOS
    object for any seed below the image's object size, 4 MiB by default), also while a VM has it open.
author: hardway.cloud developers (!UNKNOWN)
extends_documentation_fragment:
  - hardway.cloud.attributes
  - ansible.builtin.files
  - hardway.cloud.ceph
options:
  dest:
    description:
      - Where the image is written on the host (a path, e.g. below libvirt's image directory).
      - Exactly one of I(dest) and I(rbd) is required.
    type: path
  rbd:
    description:
      - The RBD image the seed is written into, instead of I(dest). The Ceph connection options (I(conf),
        I(keyring), I(user), I(cluster), I(timeout)) say how to reach the cluster; the file options (I(mode),
        I(owner), ...) do not apply.
      - Removing it (I(state=absent)) is refused while a client has it open (a running VM).
    type: dict
    suboptions:
      pool:
        description: The pool.
        type: str
        required: true
      namespace:
        description: The RBD namespace in the pool (must exist).
        type: str
        default: ""
      image:
        description: The image's name.
        type: str
        required: true
  state:
    description: Whether the image exists. C(absent) removes the file or RBD image.
    type: str
    choices: [present, absent]
    default: present
  instance_id:
    description:
      - The C(instance-id) of the meta-data. cloud-init runs its once-per-instance modules again when it changes,
        so keep it stable for the life of the VM (the VM's UUID or name is a good choice).
      - Required when I(state=present).
    type: str
  hostname:
    description: The C(local-hostname) of the meta-data, which cloud-init sets as the guest's host name.
    type: str
  user_data:
    description:
      - The user-data. A dict is rendered as C(#cloud-config). A string is used as given and must start with
        C(#cloud-config), C(#!) or another cloud-init part header (C(#include), a MIME multipart document).
      - Without I(user_data) an empty cloud-config is written (NoCloud needs the file).
    type: raw
  meta_data:
    description: Further meta-data keys (C(instance-id) and C(local-hostname) come from their own options).
    type: dict
    default: {}
  network_config:
    description:
      - Network configuration, cloud-init's version 1 or version 2 format (with or without a top-level
        C(network) key). Without it the guest's image decides (often DHCP on the first NIC).
    type: dict
  vendor_data:
    description: The vendor-data, like I(user_data) (a dict or a string).
    type: raw
  ssh_authorized_keys:
    description:
      - SSH public keys for the default user, added to I(user_data)'s C(ssh_authorized_keys). Needs I(user_data)
        as a dict (or none).
    type: list
    elements: str
    default: []
notes:
  - Needs the Python libraries pycdlib and PyYAML on the host (Debian packages C(python3-pycdlib), C(python3-yaml));
    I(rbd) also needs the rados and rbd bindings.
seealso:
  - module: hardway.cloud.kvm_instance
  - name: cloud-init NoCloud data source
    description: The seed format.
    link: https://cloudinit.readthedocs.io/en/latest/reference/datasources/nocloud.html
"""

EXAMPLES = r"""
- name: Seed for a tenant VM
  hardway.cloud.cloudinit_seed:
    dest: /var/lib/libvirt/images/web1-seed.iso
    instance_id: web1
    hostname: web1
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC8dbOPN3UC4XqnCRmHCDrxfzKaQuC+/ke1LB0p3Rc2K admin@example.org
    user_data:
      packages: [nginx]
      write_files:
        - path: /etc/motd
          content: "Managed by hardway.cloud\n"
    network_config:
      version: 2
      ethernets:
        eth0:
          match: {macaddress: "52:54:00:12:34:56"}
          accept-ra: true
          dhcp4: false
          dhcp6: false

- name: A raw multipart user-data from a template
  hardway.cloud.cloudinit_seed:
    dest: /var/lib/libvirt/images/db1-seed.iso
    instance_id: db1
    user_data: "{{ lookup('ansible.builtin.template', 'db1-user-data.j2') }}"
    mode: "0640"
    group: libvirt-qemu

- name: Remove a seed
  hardway.cloud.cloudinit_seed:
    dest: /var/lib/libvirt/images/db1-seed.iso
    state: absent

- name: A seed in Ceph, which any hypervisor can attach
  hardway.cloud.cloudinit_seed:
    rbd: {pool: vms, image: web1-seed}
    user: hypervisor
    keyring: /etc/ceph/ceph.client.hypervisor.keyring
    instance_id: web1
    hostname: web1
    user_data:
      packages: [nginx]
"""

RETURN = r"""
dest:
  description: The image's path.
  returned: with I(dest)
  type: str
  sample: /var/lib/libvirt/images/web1-seed.iso
image:
  description: The RBD image, C(POOL/IMAGE) or C(POOL/NAMESPACE/IMAGE).
  returned: with I(rbd)
  type: str
  sample: vms/web1-seed
sha256:
  description: SHA-256 of the image (null when absent).
  returned: always
  type: str
  sample: 3a1f5c0e2c4b7d2f0e8b1c9d6a5e4f3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e
size:
  description: Size of the image in bytes (0 when absent).
  returned: always
  type: int
  sample: 69632
files:
  description: The files in the image.
  returned: always
  type: list
  elements: str
  sample: [meta-data, network-config, user-data]
"""

import hashlib
import os
import tempfile

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.hardway.cloud.plugins.module_utils import cloudinit as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import HardwayModule, ModuleError, ParameterError
from ansible_collections.hardway.cloud.plugins.module_utils.ceph import (
    HAS_RADOS, PACKAGES as CEPH_PACKAGES, Cluster, ceph_argument_spec, connection_options)
from ansible_collections.hardway.cloud.plugins.module_utils.rbd import check_name, image_spec

try:
    import rbd
    HAS_RBD = True
except ImportError:
    rbd = None
    HAS_RBD = False

PACKAGES = {"pycdlib": "python3-pycdlib", "PyYAML": "python3-yaml"}


class CloudinitSeed(HardwayModule):
    argument_spec = ceph_argument_spec(
        dest=dict(type="path"),
        rbd=dict(type="dict", options=dict(
            pool=dict(type="str", required=True),
            namespace=dict(type="str", default=""),
            image=dict(type="str", required=True),
        )),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        instance_id=dict(type="str"),
        hostname=dict(type="str"),
        user_data=dict(type="raw", no_log=True),
        meta_data=dict(type="dict", default={}),
        network_config=dict(type="dict"),
        vendor_data=dict(type="raw", no_log=True),
        ssh_authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
    )
    module_kwargs = dict(add_file_common_args=True, mutually_exclusive=[("dest", "rbd")],
                         required_one_of=[("dest", "rbd")])

    def run(self):
        if self.params["rbd"] is not None:
            self._run_rbd()
            return
        dest = self.params["dest"]
        if os.path.isdir(dest):
            raise ParameterError("dest", "%s is a directory; give the image's file name" % dest)
        current = self._read(dest)
        if self.params["state"] == "absent":
            self._absent(dest, current)
            return
        image, seed_files = self._seed(current, dest)
        if self.result["changed"] and not self.check_mode:
            self._write(dest, image)
        if os.path.exists(dest):
            file_args = self.module.load_file_common_arguments(self.params, path=dest)
            self.result["changed"] = self.module.set_fs_attributes_if_different(
                file_args, self.result["changed"], diff=None)

    def _seed(self, current, where):
        """Build the seed; record checksum, files, change and diff against ``current`` (bytes or None)."""
        try:
            warnings = []
            seed_files = logic.files(self.params, warnings)
            for warning in warnings:
                self.module.warn(warning)
            image = logic.build_iso(seed_files)
            before_files = self._files_of(current)
        except logic.MissingLibrary as exc:
            raise ModuleError(missing_required_lib("%s (Debian package %s)" % (exc, PACKAGES[str(exc)])))
        self.result.update(sha256=hashlib.sha256(image).hexdigest(), size=len(image), files=sorted(seed_files),
                           changed=current != image)
        self.set_diff(logic.outline(before_files) if current is not None else "", logic.outline(seed_files))
        if self.module._diff:
            self.result["diff"].update(before_header=where, after_header=where)
        return image, seed_files

    # the seed in an RBD image

    def _run_rbd(self):
        params = self.params
        for option in ("mode", "owner", "group", "seuser", "serole", "selevel", "setype", "attributes"):
            if params.get(option) is not None:
                raise ParameterError(option, "applies to a seed file (dest), not to an RBD image (rbd)")
        target = params["rbd"]
        pool = check_name("rbd.pool", target["pool"], "pool")
        namespace = check_name("rbd.namespace", target["namespace"], "namespace") if target["namespace"] else ""
        name = check_name("rbd.image", target["image"], "image")
        spec = image_spec(pool, namespace, name)
        options = connection_options(params)
        if not (HAS_RADOS and HAS_RBD):
            raise ModuleError(missing_required_lib(CEPH_PACKAGES))
        self.result["image"] = spec
        with Cluster(options) as cluster:
            ioctx = cluster.ioctx(pool, parameter="rbd.pool")
            try:
                if namespace:
                    if not rbd.RBD().namespace_exists(ioctx, namespace):
                        raise ParameterError("rbd.namespace", "namespace %s does not exist in pool %s of %s"
                                             % (namespace, pool, cluster.where()))
                    ioctx.set_namespace(namespace)
                self._converge_rbd(ioctx, name, spec)
            finally:
                ioctx.close()

    def _converge_rbd(self, ioctx, name, spec):
        # read-only: a reader is not a watcher, so the watchers are other clients
        try:
            with rbd.Image(ioctx, name, read_only=True) as handle:
                current = handle.read(0, handle.size())
                watchers = [watcher["addr"] for watcher in handle.watchers_list()]
        except rbd.ImageNotFound:
            current, watchers = None, []
        if self.params["state"] == "absent":
            self._absent_rbd(ioctx, name, spec, current, watchers)
            return
        image, _files = self._seed(current, "rbd:" + spec)
        if not self.result["changed"] or self.check_mode:
            return
        try:
            if current is None:
                rbd.RBD().create(ioctx, name, len(image), old_format=False)
            with rbd.Image(ioctx, name) as handle:
                if handle.size() != len(image):
                    handle.resize(len(image), allow_shrink=True)
                handle.write(image, 0)
                handle.flush()
        except rbd.Error as exc:
            raise ModuleError("cannot write the seed into %s: %s" % (spec, exc))

    def _absent_rbd(self, ioctx, name, spec, current, watchers):
        self.result.update(sha256=None, size=0, files=[], changed=current is not None)
        if current is None:
            return
        self.set_diff(logic.outline(self._files_of(current)), "")
        if watchers:
            raise ModuleError("the seed %s is in use (open by %s): stop the VM that has it attached first"
                              % (spec, ", ".join(watchers)), changed=False)
        if self.check_mode:
            return
        try:
            rbd.RBD().remove(ioctx, name)
        except rbd.Error as exc:
            raise ModuleError("cannot remove %s: %s" % (spec, exc))

    def _read(self, dest):
        self.result["dest"] = dest
        try:
            with open(dest, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModuleError("cannot read %s: %s" % (dest, exc))

    def _files_of(self, data):
        """The current image's files, for the diff; an image that is not a seed shows as nothing."""
        if data is None:
            return {}
        try:
            label, found = logic.read_iso(data)
        except logic.MissingLibrary:
            raise
        except Exception:  # pylint: disable=broad-except
            return {"user-data": "(the current image is not an ISO image)"}
        return found if label == logic.LABEL else {"user-data": "(image labelled %r, not cidata)" % label}

    def _write(self, dest, image):
        directory = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(directory):
            raise ParameterError("dest", "the directory %s does not exist" % directory)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(dest))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(image)
                handle.flush()
                os.fsync(handle.fileno())
            if os.path.exists(dest):
                stat = os.stat(dest)
                os.chmod(tmp, stat.st_mode & 0o7777)
                if os.getuid() == 0:
                    os.chown(tmp, stat.st_uid, stat.st_gid)
            os.rename(tmp, dest)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise ModuleError("cannot write %s: %s" % (dest, exc))

    def _absent(self, dest, current):
        self.result.update(sha256=None, size=0, files=[], changed=current is not None)
        if current is not None:
            self.set_diff(logic.outline(self._files_of(current)), "")
        if current is not None and not self.check_mode:
            try:
                os.unlink(dest)
            except OSError as exc:
                raise ModuleError("cannot remove %s: %s" % (dest, exc))


def main():
    CloudinitSeed.main()


if __name__ == "__main__":
    main()
