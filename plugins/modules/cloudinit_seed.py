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
  - "A batch (I(seeds)) is one task, and one connection to the cluster, for many seeds, e.g. those of all the VMs
    of a hypervisor. Every entry is read, built and checked before any is written, so bad input in any entry fails
    the task naming the entry's option (C(seeds[3].user_data)) and nothing is written. Then they are written in
    order; when one fails, the ones before it are done and reported in I(seeds), and I(failed_entry) says which
    one failed."
author: hardway.cloud developers (!UNKNOWN)
extends_documentation_fragment:
  - hardway.cloud.attributes
  - ansible.builtin.files
  - hardway.cloud.ceph
options:
  dest:
    description:
      - Where the image is written on the host (a path, e.g. below libvirt's image directory).
      - Exactly one of I(dest), I(rbd) and I(seeds) is required.
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
  seeds:
    description:
      - Many seeds in one task, instead of I(dest) or I(rbd). Each entry is a dict of the options of one seed -
        exactly one of I(dest) and I(rbd), and any of I(state), I(instance_id), I(hostname), I(user_data),
        I(meta_data), I(network_config), I(vendor_data) and I(ssh_authorized_keys).
      - An option an entry leaves out (or sets to null) is the top level's, which has the default. The Ceph
        connection options and the file options (I(mode), I(owner), ...) are given at the top level, for all.
      - The I(user_data) and I(vendor_data) of the entries are kept out of the output as the top level's are.
      - A seed may be listed once. The results (I(seeds)) are in the same order. An empty list does nothing.
    type: list
    elements: raw
  state:
    description: Whether the image exists. C(absent) removes the file or RBD image.
    type: str
    choices: [present, absent]
    default: present
  instance_id:
    description:
      - The C(instance-id) of the meta-data. cloud-init runs its once-per-instance modules again when it changes,
        so keep it stable for the life of the VM (the VM's UUID or name is a good choice).
      - 1 to 128 letters, digits, C(_), C(.), C(:) and C(-), starting with a letter or digit (cloud-init names a
        directory on the guest after it).
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

- name: The seeds of two VMs in Ceph, in one task and one connection
  hardway.cloud.cloudinit_seed:
    user: hypervisor
    keyring: /etc/ceph/ceph.client.hypervisor.keyring
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC8dbOPN3UC4XqnCRmHCDrxfzKaQuC+/ke1LB0p3Rc2K admin@example.org
    seeds:
      - {rbd: {pool: vms, image: web1-seed}, instance_id: web1, hostname: web1}
      - {rbd: {pool: vms, image: web2-seed}, instance_id: web2, hostname: web2, user_data: {packages: [nginx]}}

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
seeds:
  description:
    - One result for each entry of I(seeds), in the order given - the return values of a single seed (I(dest) or
      I(image), I(sha256), I(size), I(files), I(changed)). When an entry fails, the entries before it.
    - With I(seeds), the top-level I(changed) is true when it is for any entry, and the single seed's other return
      values are not returned.
  returned: with I(seeds)
  type: list
  elements: dict
  sample: [{image: vms/web1-seed, sha256: 3a1f5c0e2c4b7d2f0e8b1c9d6a5e4f3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e, size: 69632,
            files: [meta-data, user-data], changed: true}]
failed_entry:
  description: The index in I(seeds) of the entry that failed or was refused (C(seeds[INDEX]) in the message).
  returned: when an entry of I(seeds) fails
  type: int
  sample: 3
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
  returned: without I(seeds)
  type: str
  sample: 3a1f5c0e2c4b7d2f0e8b1c9d6a5e4f3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e
size:
  description: Size of the image in bytes (0 when absent).
  returned: without I(seeds)
  type: int
  sample: 69632
files:
  description: The files in the image.
  returned: without I(seeds)
  type: list
  elements: str
  sample: [meta-data, network-config, user-data]
"""

import hashlib
import os
import tempfile

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.hardway.cloud.plugins.module_utils import cloudinit as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import (
    HardwayModule, ModuleError, ParameterError, batch_entries, entry_options, within)
from ansible_collections.hardway.cloud.plugins.module_utils.ceph import (
    HAS_RADOS, PACKAGES as CEPH_PACKAGES, Clusters, ceph_argument_spec, connection_options, explain)
from ansible_collections.hardway.cloud.plugins.module_utils.rbd import check_name, image_spec

try:
    import rbd
    HAS_RBD = True
except ImportError:
    rbd = None
    HAS_RBD = False

PACKAGES = {"pycdlib": "python3-pycdlib", "PyYAML": "python3-yaml"}


FILE_OPTIONS = ("mode", "owner", "group", "seuser", "serole", "selevel", "setype", "attributes")
SEED_SPEC = dict(
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
# an entry of seeds: one seed's options; the connection and the file attributes are the top level's
SEED_OPTIONS = entry_options(SEED_SPEC)


class CloudinitSeed(HardwayModule):
    argument_spec = ceph_argument_spec(seeds=dict(type="list", elements="raw"), **SEED_SPEC)
    module_kwargs = dict(add_file_common_args=True,
                         mutually_exclusive=[("dest", "rbd"), ("seeds", "dest"), ("seeds", "rbd")],
                         required_one_of=[("dest", "rbd", "seeds")])

    def __init__(self):
        super(CloudinitSeed, self).__init__()
        self.clusters = Clusters()
        self.ioctxs = {}

    def run(self):
        try:
            if self.params["seeds"] is None:
                self._run_one()
            else:
                self._run_batch()
        finally:
            for ioctx in self.ioctxs.values():
                ioctx.close()
            self.clusters.close()

    def _run_one(self):
        plan = self._plan(self.params)
        self.result.update(plan["result"])
        if plan["diff"] is not None:
            self.set_diff(*plan["diff"])
            if self.module._diff and plan["header"]:
                self.result["diff"].update(before_header=plan["header"], after_header=plan["header"])
        self._apply(plan)
        self.result["changed"] = plan["result"]["changed"]

    def _run_batch(self):
        """seeds: every entry is planned (read, built, checked) before any is
        written; then they are written in order, up to the first that fails."""
        try:
            entries = batch_entries(self.module, "seeds", SEED_OPTIONS, key=None)
        except ParameterError as exc:
            self.result["failed_entry"] = exc.index
            raise
        plans, seen = [], {}
        for index, (where, params) in enumerate(entries):
            label = params.get("dest") or _rbd_label(params.get("rbd"))
            try:
                if (params.get("dest") is None) == (params.get("rbd") is None):
                    raise ParameterError("dest", "give exactly one of dest and rbd")
                plan = self._plan(params)
            except ParameterError as exc:
                self.result["failed_entry"] = index
                raise within(where, exc, label)
            except ModuleError as exc:
                raise ModuleError("%s (%s): %s" % (where, label, exc), failed_entry=index, **exc.details)
            if plan["label"] in seen:
                self.result["failed_entry"] = index
                raise ParameterError(where, "writes %s a second time (first in %s)"
                                     % (plan["label"], seen[plan["label"]]))
            seen[plan["label"]] = where
            plans.append(plan)
        done = []
        for index, plan in enumerate(plans):
            try:
                self._apply(plan)
            except (ParameterError, ModuleError) as exc:
                self._report_batch(done)
                raise ModuleError("%s (%s): %s" % (entries[index][0], plan["label"], exc), failed_entry=index,
                                  parameter="%s.%s" % (entries[index][0], exc.parameter)
                                  if isinstance(exc, ParameterError) else None)
            done.append(plan)
        self._report_batch(done)

    def _report_batch(self, plans):
        self.result["seeds"] = [plan["result"] for plan in plans]
        self.result["changed"] = any(plan["result"]["changed"] for plan in plans)
        changed = [plan for plan in plans if plan["result"]["changed"] and plan["diff"] is not None]
        self.set_diff("".join("# %s\n%s" % (plan["label"], plan["diff"][0]) for plan in changed),
                      "".join("# %s\n%s" % (plan["label"], plan["diff"][1]) for plan in changed))

    # one seed: plan (read what is there, build what should be), apply

    def _plan(self, params):
        if params.get("rbd") is not None:
            return self._plan_rbd(params)
        dest = params["dest"]
        if os.path.isdir(dest):
            raise ParameterError("dest", "%s is a directory; give the image's file name" % dest)
        current = self._read(dest)
        directory = os.path.dirname(os.path.abspath(dest))
        if params["state"] == "present" and not os.path.isdir(directory):
            raise ParameterError("dest", "the directory %s does not exist" % directory)
        plan = {"kind": "file", "dest": dest, "label": dest, "header": dest, "state": params["state"],
                "current": current, "params": params}
        if params["state"] == "absent":
            return self._plan_absent(plan, {"dest": dest})
        return self._plan_seed(plan, {"dest": dest})

    def _plan_rbd(self, params):
        for option in FILE_OPTIONS:
            if self.params.get(option) is not None:
                raise ParameterError(option, "applies to a seed file (dest), not to an RBD image (rbd)")
        target = params["rbd"]
        pool = check_name("rbd.pool", target["pool"], "pool")
        namespace = check_name("rbd.namespace", target["namespace"], "namespace") if target["namespace"] else ""
        name = check_name("rbd.image", target["image"], "image")
        spec = image_spec(pool, namespace, name)
        ioctx = self._ioctx(pool, namespace)
        # read-only: a reader is not a watcher, so the watchers are other clients
        try:
            with rbd.Image(ioctx, name, read_only=True) as handle:
                current = handle.read(0, handle.size())
                watchers = [watcher["addr"] for watcher in handle.watchers_list()]
        except rbd.ImageNotFound:
            current, watchers = None, []
        except rbd.Error as exc:
            raise ModuleError("cannot read %s: %s" % (spec, explain(exc, pool, self.params["timeout"])))
        plan = {"kind": "rbd", "ioctx": ioctx, "name": name, "spec": spec, "label": spec, "header": "rbd:" + spec,
                "state": params["state"], "current": current, "watchers": watchers, "params": params}
        if params["state"] == "absent":
            return self._plan_absent(plan, {"image": spec})
        return self._plan_seed(plan, {"image": spec})

    def _ioctx(self, pool, namespace):
        if not (HAS_RADOS and HAS_RBD):
            raise ModuleError(missing_required_lib(CEPH_PACKAGES))
        key = (pool, namespace)
        if key not in self.ioctxs:
            cluster = self.clusters.get(connection_options(self.params))
            ioctx = cluster.ioctx(pool, parameter="rbd.pool")
            self.ioctxs[key] = ioctx
            if namespace:
                if not rbd.RBD().namespace_exists(ioctx, namespace):
                    raise ParameterError("rbd.namespace", "namespace %s does not exist in pool %s of %s"
                                         % (namespace, pool, cluster.where()))
                ioctx.set_namespace(namespace)
        return self.ioctxs[key]

    def _plan_seed(self, plan, result):
        """The seed built from the parameters; what changes against the current image."""
        try:
            warnings = []
            seed_files = logic.files(plan["params"], warnings)
            for warning in warnings:
                self.module.warn(warning)
            image = logic.build_iso(seed_files)
            before_files = self._files_of(plan["current"])
        except logic.MissingLibrary as exc:
            raise ModuleError(missing_required_lib("%s (Debian package %s)" % (exc, PACKAGES[str(exc)])))
        result.update(sha256=hashlib.sha256(image).hexdigest(), size=len(image), files=sorted(seed_files),
                      changed=plan["current"] != image)
        plan.update(image=image, result=result, diff=(
            logic.outline(before_files) if plan["current"] is not None else "", logic.outline(seed_files)))
        return plan

    def _plan_absent(self, plan, result):
        current = plan["current"]
        result.update(sha256=None, size=0, files=[], changed=current is not None)
        plan.update(result=result, header=None,
                    diff=(logic.outline(self._files_of(current)), "") if current is not None else None)
        if current is not None and plan.get("watchers"):
            raise ModuleError("the seed %s is in use (open by %s): stop the VM that has it attached first"
                              % (plan["spec"], ", ".join(plan["watchers"])), changed=False)
        return plan

    def _apply(self, plan):
        """Write (or remove) what the plan says, unless check mode; a seed
        file's attributes, also in check mode (Ansible plans them there)."""
        changed = plan["result"]["changed"]
        if changed and not self.check_mode:
            if plan["kind"] == "rbd" and plan["state"] == "present":
                self._write_rbd(plan)
            elif plan["kind"] == "rbd":
                self._remove_rbd(plan)
            elif plan["state"] == "present":
                self._write(plan["dest"], plan["image"])
            else:
                self._remove(plan["dest"])
        if plan["kind"] == "file" and plan["state"] == "present" and os.path.exists(plan["dest"]):
            file_args = self.module.load_file_common_arguments(self.params, path=plan["dest"])
            plan["result"]["changed"] = self.module.set_fs_attributes_if_different(file_args, changed, diff=None)

    def _write_rbd(self, plan):
        ioctx, name, image = plan["ioctx"], plan["name"], plan["image"]
        try:
            if plan["current"] is None:
                rbd.RBD().create(ioctx, name, len(image), old_format=False)
            with rbd.Image(ioctx, name) as handle:
                if handle.size() != len(image):
                    handle.resize(len(image), allow_shrink=True)
                handle.write(image, 0)
                handle.flush()
        except rbd.Error as exc:
            raise ModuleError("cannot write the seed into %s: %s" % (plan["spec"], self._explain(exc, plan)))

    def _remove_rbd(self, plan):
        try:
            rbd.RBD().remove(plan["ioctx"], plan["name"])
        except rbd.Error as exc:
            raise ModuleError("cannot remove %s: %s" % (plan["spec"], self._explain(exc, plan)))

    def _explain(self, exc, plan):
        return explain(exc, plan["ioctx"].name, self.params["timeout"])

    def _read(self, dest):
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

    def _remove(self, dest):
        try:
            os.unlink(dest)
        except OSError as exc:
            raise ModuleError("cannot remove %s: %s" % (dest, exc))


def _rbd_label(target):
    if isinstance(target, dict):
        return image_spec(target.get("pool") or "", target.get("namespace") or "", target.get("image") or "")
    return None


def main():
    CloudinitSeed.main()


if __name__ == "__main__":
    main()
