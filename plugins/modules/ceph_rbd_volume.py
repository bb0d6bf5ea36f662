#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ceph_rbd_volume
short_description: Ceph RBD images (VM volumes), their size, parent and snapshots
version_added: 0.1.0
description:
  - Manages an RBD image (I(name)), or a batch of them in one task (I(volumes)), through the librados and librbd
    Python bindings on the host (no C(rbd) command line). It creates an image empty, as a copy-on-write clone of a
    snapshot, or from a qcow2 or raw file; grows (and, when asked, shrinks) it; detaches it from its parent (flatten);
    declares its snapshots and their protection; removes it.
  - A I(source) is only used when the image is created. When the image exists, a later run with the same source is
    not a change, and an image whose parent is another snapshot than I(source) is left as it is, with a warning
    (it is never re-created, which would throw its data away). A flattened clone has no parent and gets no warning.
  - An import creates the image with the bindings, as large as the file's virtual size or I(size) if that is
    larger, and writes the file into it with C(qemu-img convert -n -O raw SRC rbd:POOL/IMAGE:...) (only paths, never
    key material, on its command line). It writes into a temporary image C(.NAME.importing) that is renamed into
    place when C(qemu-img) is done, so a failed or interrupted import never leaves a half-written image under the
    real name.
  - Safety. Shrinking needs I(allow_shrink). An image that a client has open (a running VM, a mapped device) is
    never removed, not even with I(force) (Ceph would refuse, and breaking the client's session would break every
    disk of that VM). An image with snapshots, or whose snapshots have clones, is only removed with I(force); then
    each clone is flattened first (it gets its own copy of the data and keeps working), the snapshots are
    unprotected and removed, then the image. The same holds for removing or unprotecting one snapshot that has
    clones.
  - Features (I(features)) are chosen when the image is created. On an existing image the ones librbd can switch
    online (C(exclusive-lock), C(object-map) with a rebuild of the map, C(fast-diff), C(journaling), and switching
    C(deep-flatten) off) are changed while no client has the image open; any other difference fails.
  - Check mode returns the plan (I(actions)) and the facts the image would have, and changes nothing. With
    C(--diff) the image's facts (pool, namespace, name, size, features, parent, snapshots) before and after are
    returned; for a batch, keyed by image (C(POOL/IMAGE) or C(POOL/NAMESPACE/IMAGE)) and only for the images that
    change (would change), an image that does not exist having no key.
  - "A batch (I(volumes)) is one connection to the cluster and one task for many images, e.g. all the disks of a
    tenant: far faster than a loop, which pays Ansible's cost of a task for each image. Every entry is checked and
    planned, in the order given, before any image is changed; each entry is planned against the state the entries
    before it leave, so an entry may clone a snapshot that an earlier entry creates, and an entry that removes an
    image with force only flattens the clones the earlier entries leave. A bad entry, or one that would be refused
    (in use, clones, shrink), fails the task naming the entry's option (C(volumes[3].size)) and nothing is changed.
    Then the entries are applied in order; the first one that fails stops the batch: the entries before it are
    done and reported in I(volumes), the ones after it are not touched, and I(failed_entry) says which one failed."
author: hardway.cloud developers (!UNKNOWN)
extends_documentation_fragment:
  - hardway.cloud.attributes
  - hardway.cloud.ceph
options:
  pool:
    description:
      - The pool of the image (an RBD pool). A pool that does not exist fails the task.
      - Required, unless every entry of I(volumes) gives its own.
    type: str
  namespace:
    description:
      - The RBD namespace in the pool (e.g. one per tenant). Empty for the pool's default namespace.
      - The namespace must exist (C(rbd namespace create POOL/NAMESPACE)); it is not created by this module.
    type: str
    default: ""
  name:
    description:
      - The image's name. It and the names of pools, namespaces and snapshots are letters, digits, C(.), C(_) and
        C(-), not starting with C(-).
      - Exactly one of I(name) and I(volumes) is required.
    type: str
  state:
    description: Whether the image exists.
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - The image's size, in bytes (an integer) or with a binary unit, C(512M), C(10G), C(1.5T) (C(K), C(M), C(G),
        C(T), C(P), also written C(GiB); 1G is 2^30 bytes). C(GB) is refused as ambiguous.
      - Required to create an image without I(source). Omitted, an existing image keeps its size.
      - With I(source), I(size) is a minimum; an image is never made smaller than the snapshot or file it was made
        from (a smaller I(size) is not a shrink).
    type: raw
  source:
    description:
      - What a new image is made from. C(POOL/IMAGE@SNAPSHOT) or C(POOL/NAMESPACE/IMAGE@SNAPSHOT) clones that
        snapshot (copy-on-write; on clusters that allow clients older than Mimic the snapshot must be protected).
        An absolute path is a qcow2 or raw file on the host, imported with C(qemu-img).
      - Only used when the image is created; see the description for an existing image.
    type: str
  snapshots:
    description:
      - Snapshots of the image, declared. Snapshots not listed are left alone.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The snapshot's name.
        type: str
        required: true
      protected:
        description:
          - Whether the snapshot is protected (a protected snapshot cannot be removed; clone format 1 clones only
            protected snapshots).
          - Omitted, a new snapshot is not protected and an existing one keeps its protection.
          - Unprotecting a snapshot with clones needs I(force), which flattens the clones first.
        type: bool
      state:
        description:
          - Whether the snapshot exists. C(absent) removes it (unprotecting it first); a snapshot with clones is
            only removed with I(force), which flattens the clones first.
        type: str
        choices: [present, absent]
        default: present
  flatten:
    description:
      - Detach a clone from its parent by copying the parent's data into it. Nothing to do for an image without a
        parent. C(false) leaves a clone a clone.
    type: bool
    default: false
  allow_shrink:
    description: Allow a I(size) below the image's size. Data beyond the new end is lost.
    type: bool
    default: false
  force:
    description:
      - Remove an image with snapshots, and remove or unprotect snapshots with clones, flattening the clones first.
      - Never removes an image a client has open.
    type: bool
    default: false
  features:
    description:
      - The image's features, from C(layering), C(exclusive-lock), C(object-map) (needs C(exclusive-lock)),
        C(fast-diff) (needs C(object-map)), C(deep-flatten), C(journaling) (needs C(exclusive-lock)). A clone needs
        C(layering).
      - Omitted, a new image gets the cluster's C(rbd_default_features) (a clone its parent's features) and an
        existing image keeps its features.
    type: list
    elements: str
  volumes:
    description:
      - A batch of images, managed in one task with one connection, each entry as the single image of I(name) would
        be. The results (I(volumes)) are in the same order.
      - "An option an entry leaves out (or sets to null) is the top-level option's, which has its default when it is
        not given either: the top level holds what the entries share (I(pool), I(namespace), I(source), I(state),
        I(force), ...), the entries what differs."
      - An image may be listed once. Exactly one of I(name) and I(volumes) is required. An empty list does nothing.
    type: list
    elements: dict
    suboptions:
      name:
        description: The image's name.
        type: str
        required: true
      pool:
        description: The image's pool. Default is the top-level I(pool); one of them is required.
        type: str
      namespace:
        description: The image's namespace, C("") for the pool's default one. Default is the top-level I(namespace).
        type: str
      state:
        description: Whether the image exists. Default is the top-level I(state).
        type: str
        choices: [present, absent]
      size:
        description: The image's size, as the top-level I(size). Default is the top-level I(size).
        type: raw
      source:
        description:
          - What a new image is made from, as the top-level I(source). Default is the top-level I(source).
          - A snapshot that an earlier entry of the batch declares can be cloned.
        type: str
      snapshots:
        description: The image's declared snapshots, as the top-level I(snapshots). Default is the top-level I(snapshots).
        type: list
        elements: dict
        suboptions:
          name:
            description: The snapshot's name.
            type: str
            required: true
          protected:
            description: Whether the snapshot is protected; omitted, a new snapshot is not and an existing one keeps its
              protection.
            type: bool
          state:
            description: Whether the snapshot exists.
            type: str
            choices: [present, absent]
            default: present
      flatten:
        description: Detach a clone from its parent. Default is the top-level I(flatten).
        type: bool
      allow_shrink:
        description: Allow a I(size) below the image's size. Default is the top-level I(allow_shrink).
        type: bool
      force:
        description: As the top-level I(force). Default is the top-level I(force).
        type: bool
      features:
        description: The image's features, as the top-level I(features). Default is the top-level I(features).
        type: list
        elements: str
seealso:
  - module: hardway.cloud.kvm_instance
  - name: Ceph block devices
    description: RBD images, snapshots, layering.
    link: https://docs.ceph.com/en/pacific/rbd/rbd-snapshot/
notes:
  - C(qemu-img) with its rbd driver is needed on the host to import a file (Debian packages C(qemu-utils) and
    C(qemu-block-extra)).
  - The key is read by librados and C(qemu-img) from I(keyring); the module never reads, logs or returns it.
"""

EXAMPLES = r"""
- name: A template image, imported once, with a protected snapshot to clone from
  hardway.cloud.ceph_rbd_volume:
    pool: vms
    name: debian12
    source: /srv/images/debian-12-genericcloud-amd64.qcow2
    snapshots:
      - {name: base, protected: true}
    conf: /etc/ceph/ceph.conf
    keyring: /etc/ceph/ceph.client.hypervisor.keyring
    user: hypervisor

- name: A tenant's disk, cloned from the template and grown to its flavor's size
  hardway.cloud.ceph_rbd_volume:
    pool: vms
    namespace: acme
    name: web1-disk
    source: vms/debian12@base
    size: 10G

- name: An empty data disk with chosen features
  hardway.cloud.ceph_rbd_volume:
    pool: vms
    name: db1-data
    size: 512M
    features: [layering, exclusive-lock, object-map, fast-diff]

- name: Detach a disk from its template and keep a snapshot before an upgrade
  hardway.cloud.ceph_rbd_volume:
    pool: vms
    name: web1-disk
    namespace: acme
    flatten: true
    snapshots:
      - {name: before-upgrade}

- name: Remove a disk with its snapshots (not while a VM has it open)
  hardway.cloud.ceph_rbd_volume:
    pool: vms
    namespace: acme
    name: web1-disk
    state: absent
    force: true

- name: A tenant's disks in one task, cloned from the template; what they share is given once
  hardway.cloud.ceph_rbd_volume:
    pool: vms
    namespace: acme
    source: vms/debian12@base
    size: 10G
    volumes:
      - name: web1-disk
      - name: web2-disk
      - name: db1-disk
        size: 40G
      - name: db1-data
        source: null
        size: 100G

- name: A template and its clones in one batch (the template's entry comes first)
  hardway.cloud.ceph_rbd_volume:
    pool: vms
    volumes:
      - name: debian13
        source: /srv/images/debian-13-genericcloud-amd64.qcow2
        snapshots: [{name: base, protected: true}]
      - {name: ci1-disk, source: vms/debian13@base}
      - {name: ci2-disk, source: vms/debian13@base}

- name: Remove two disks of a tenant with their snapshots, in one task
  hardway.cloud.ceph_rbd_volume:
    pool: vms
    namespace: acme
    state: absent
    force: true
    volumes:
      - name: web1-disk
      - name: web2-disk
"""

RETURN = r"""
image:
  description: The image's facts after the run (what it would be in check mode); null when it does not exist.
  returned: with I(name)
  type: dict
  contains:
    pool:
      description: The pool.
      type: str
      sample: vms
    namespace:
      description: The namespace (empty for the default one).
      type: str
      sample: acme
    name:
      description: The image's name.
      type: str
      sample: web1-disk
    size:
      description: Size in bytes.
      type: int
      sample: 10737418240
    features:
      description: The image's features (without C(operations), which librbd sets on its own on some clones).
      type: list
      elements: str
      sample: [layering, exclusive-lock, object-map, fast-diff, deep-flatten]
    parent:
      description: The snapshot the image is a clone of, C(POOL/IMAGE@SNAPSHOT) or C(POOL/NAMESPACE/IMAGE@SNAPSHOT);
        null for an image without a parent.
      type: str
      sample: vms/debian12@base
    snapshots:
      description: The image's snapshots, oldest first, with their size, protection and number of clones.
      type: list
      elements: dict
      sample: [{name: base, size: 2147483648, protected: true, children: 3}]
    watchers:
      description: Addresses of the clients that have the image open (running VMs, mapped devices).
      type: list
      elements: str
      sample: ["[2001:db8::11]:0/3187211040"]
  sample:
    pool: vms
    namespace: ""
    name: debian12
    size: 2147483648
    features: [layering, exclusive-lock, object-map, fast-diff, deep-flatten]
    parent: null
    snapshots: [{name: base, size: 2147483648, protected: true, children: 3}]
    watchers: []
actions:
  description: What the run did (in check mode, would do), in order.
  returned: with I(name)
  type: list
  elements: str
  sample: ["clone vms/acme/web1-disk from vms/debian12@base", "resize vms/acme/web1-disk from 2 GiB to 10 GiB"]
volumes:
  description:
    - One result for each entry of I(volumes), in the order given.
    - When an entry fails while it is applied, the entries up to it; the failed one has C(failed) and C(msg).
      When the batch is refused before anything is changed, empty.
  returned: with I(volumes)
  type: list
  elements: dict
  contains:
    spec:
      description: The image, C(POOL/IMAGE) or C(POOL/NAMESPACE/IMAGE) (the keys of the batch's diff).
      type: str
      sample: vms/acme/web1-disk
    image:
      description: The image's facts right after its entry was applied (what they would be in check mode), as
        I(image) returns them for one image; null when it does not exist.
      type: dict
      sample: {pool: vms, namespace: acme, name: web1-disk, size: 10737418240, features: [layering],
               parent: vms/debian12@base, snapshots: [], watchers: []}
    actions:
      description: What was done (in check mode, would be done) to the image, in order.
      type: list
      elements: str
      sample: ["clone vms/acme/web1-disk from vms/debian12@base"]
    changed:
      description: Whether the image was (would be) changed.
      type: bool
      sample: true
    failed:
      description: Set on the entry that failed.
      type: bool
      sample: true
    msg:
      description: Why the entry failed (on the entry that failed).
      type: str
      sample: "remove vms/acme/web1-disk failed: ..."
  sample:
    - spec: vms/acme/web1-disk
      image: {pool: vms, namespace: acme, name: web1-disk, size: 10737418240, features: [layering],
              parent: vms/debian12@base, snapshots: [], watchers: []}
      actions: ["clone vms/acme/web1-disk from vms/debian12@base", "resize vms/acme/web1-disk from 2 GiB to 10 GiB"]
      changed: true
failed_entry:
  description: The index in I(volumes) of the entry that failed or was refused (C(volumes[INDEX]) in the message).
  returned: when an entry of I(volumes) fails
  type: int
  sample: 3
"""

import errno
import json
import os

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.hardway.cloud.plugins.module_utils import rbd as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import (
    HardwayModule, ModuleError, ParameterError, _AnsibleModule)
from ansible_collections.hardway.cloud.plugins.module_utils.ceph import (
    HAS_RADOS, PACKAGES, Cluster, ceph_argument_spec, connection_options, explain, osds_down, rados,
    timed_out)

try:
    import rbd
    HAS_RBD = True
except ImportError:
    HAS_RBD = False

IMPORT_FORMATS = ("qcow2", "raw")


def _snapshot_options():
    return dict(
        name=dict(type="str", required=True),
        protected=dict(type="bool"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )


class _Module(_AnsibleModule):
    """Also says which entry of volumes a validation message is about
    (``failed_entry``) and which image that entry is."""

    def name_parameter(self, msg, kwargs):
        if msg.startswith("one of the following is required"):
            kwargs["parameter"] = "name"
            return msg, kwargs
        msg, kwargs = super(_Module, self).name_parameter(msg, kwargs)
        index = logic.entry_index(kwargs.get("parameter") or "")
        if index is not None:
            kwargs["failed_entry"] = index
            entry = ((getattr(self, "_given", None) or {}).get("volumes") or [])[index]
            if isinstance(entry, dict) and isinstance(entry.get("name"), str) \
                    and not kwargs["parameter"].endswith(".name"):
                msg += " (for image %s)" % entry["name"]
        return msg, kwargs


class _Failed(Exception):
    """Applying an image's plan stopped after ``done`` actions; the image is now ``actual``."""

    def __init__(self, message, done, actual, cause=None):
        super(_Failed, self).__init__(message)
        self.done = done
        self.actual = actual
        self.cause = cause


class CephRbdVolume(HardwayModule):
    argument_spec = ceph_argument_spec(
        pool=dict(type="str"),
        namespace=dict(type="str", default=""),
        name=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        size=dict(type="raw"),
        source=dict(type="str"),
        snapshots=dict(type="list", elements="dict", default=[], options=_snapshot_options()),
        flatten=dict(type="bool", default=False),
        allow_shrink=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        features=dict(type="list", elements="str"),
        # an option an entry leaves out is the top level's: no defaults here
        volumes=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            pool=dict(type="str"),
            namespace=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"]),
            size=dict(type="raw"),
            source=dict(type="str"),
            snapshots=dict(type="list", elements="dict", options=_snapshot_options()),
            flatten=dict(type="bool"),
            allow_shrink=dict(type="bool"),
            force=dict(type="bool"),
            features=dict(type="list", elements="str"),
        )),
    )
    module_kwargs = dict(mutually_exclusive=[("name", "volumes")], required_one_of=[("name", "volumes")])

    module_class = _Module

    def __init__(self):
        super(CephRbdVolume, self).__init__()
        self.options = self.cluster = self.handle = self.source_info = self.defaults = None
        self.ioctxs = {}   # (pool, namespace): ioctx, opened once per run
        self.sources = {}  # clone source spec: its size and features, read once per run

    def run(self):
        if not (HAS_RADOS and HAS_RBD):
            self.module.fail_json(msg=missing_required_lib(PACKAGES))
        if self.params["volumes"] is not None:
            self.result.update(volumes=[])
            try:
                wants = logic.wanted_volumes(self.params)
            except ParameterError as exc:
                if logic.entry_index(exc.parameter) is not None:
                    self.result["failed_entry"] = logic.entry_index(exc.parameter)
                raise
            self.options = connection_options(self.params)
        else:
            wants = [logic.wanted(self.params)]
            self.options = connection_options(self.params)
            self.result.update(image=None, actions=[])
        if not wants:
            return
        with Cluster(self.options) as cluster:
            self.cluster = cluster
            try:
                if self.params["volumes"] is not None:
                    self._converge_volumes(wants)
                else:
                    self._converge(wants[0])
            except (rbd.Error, rados.Error) as exc:
                # connected, so the monitors answered: what did not is the OSDs
                if not timed_out(exc):
                    raise
                raise ModuleError(osds_down(", ".join(sorted(set(want["pool"] for want in wants))),
                                            self.options["timeout"], "reading the images"))
            finally:
                for ioctx in self.ioctxs.values():
                    ioctx.close()
                self.ioctxs = {}

    def _ioctx(self, pool, namespace, pool_parameter, namespace_parameter):
        """An I/O context on the pool's namespace, opened once per run and closed at its end."""
        key = (pool, namespace)
        if key in self.ioctxs:
            return self.ioctxs[key]
        ioctx = self.cluster.ioctx(pool, parameter=pool_parameter)
        if namespace:
            if not rbd.RBD().namespace_exists(ioctx, namespace):
                ioctx.close()
                raise ParameterError(namespace_parameter, "namespace %s does not exist in pool %s of %s (create it "
                                                          "with rbd namespace create %s/%s)"
                                     % (namespace, pool, self.cluster.where(), pool, namespace))
            ioctx.set_namespace(namespace)
        self.ioctxs[key] = ioctx
        return ioctx

    def _converge(self, want):
        """One image (name): the result is its facts, actions and diff."""
        ioctx = self._ioctx(want["pool"], want["namespace"], "pool", "namespace")
        current, children = read_image(ioctx, want)
        self.result["image"] = current
        entry = self._plan(want, ioctx, current, children)
        for warning in entry["warnings"]:
            self.module.warn(warning)
        self.result["actions"] = entry["described"]
        self.result["changed"] = bool(entry["actions"])
        self.result["image"] = entry["after"]
        self.set_diff(logic.view(current), logic.view(entry["after"]))
        if self.check_mode or not entry["actions"]:
            return
        try:
            actual = self._apply(entry)
        except _Failed as failed:
            # what the image is now, not what it was to become, and what was done
            self.result["image"] = failed.actual
            self.set_diff(logic.view(current), logic.view(failed.actual))
            self.result.update(changed=failed.done > 0, actions=entry["described"][:failed.done])
            if isinstance(failed.cause, ParameterError) and failed.done == 0:
                # librbd's refusal of the first action (see _do_clone): nothing changed
                raise failed.cause
            raise ModuleError(str(failed))
        self.result["image"] = actual
        self.set_diff(logic.view(current), logic.view(actual))

    def _converge_volumes(self, wants):
        """A batch (volumes): every entry is planned, in order, against the state
        the entries before it leave, before any is applied; then they are applied
        in order, up to the first that fails."""
        batch = logic.Batch(wants)
        entries = []
        for index, want in enumerate(wants):
            try:
                ioctx = self._ioctx(want["pool"], want["namespace"], "pool", "namespace")
                current, children = read_image(ioctx, want)
                entry = self._plan(want, ioctx, current, children, batch)
            except ParameterError as exc:
                self.result["failed_entry"] = index
                raise logic.within(want["where"], exc, want["spec"], "image ")
            except ModuleError as exc:
                raise ModuleError("%s (%s): %s" % (want["where"], want["spec"], exc), failed_entry=index,
                                  **exc.details)
            batch.record(want, entry["actions"], entry["after"])
            entries.append(entry)
        for entry in entries:
            for warning in entry["warnings"]:
                self.module.warn("%s: %s" % (entry["want"]["where"], warning))
        results = [_volume(entry, entry["after"], len(entry["actions"])) for entry in entries]
        self._report(entries, results)
        if self.check_mode:
            return
        for index, entry in enumerate(entries):
            if not entry["actions"]:
                continue
            try:
                results[index]["image"] = self._apply(entry)
            except _Failed as failed:
                # the entries before it are done, the ones after it untouched
                results[index] = _volume(entry, failed.actual, failed.done)
                results[index].update(failed=True, msg=str(failed))
                self._report(entries[:index + 1], results[:index + 1])
                details = {"failed_entry": index}
                if isinstance(failed.cause, ParameterError):
                    details["parameter"] = "%s.%s" % (entry["want"]["where"], failed.cause.parameter)
                raise ModuleError("%s (%s): %s" % (entry["want"]["where"], entry["want"]["spec"], failed), **details)
            except Exception:
                # unforeseen (main() reports it): what is known to be done is the entries before it
                self.result["failed_entry"] = index
                self._report(entries[:index], results[:index])
                raise
        self._report(entries, results)

    def _report(self, entries, results):
        self.result["volumes"] = results
        self.result["changed"] = any(result["changed"] for result in results)
        self.set_diff(*logic.batch_diff([(result["spec"], entry["current"], result["image"], result["changed"])
                                         for entry, result in zip(entries, results)]))

    def _plan(self, want, ioctx, current, children, batch=None):
        """One image's plan from its facts (in a batch, as the entries before it leave them)."""
        planned = current
        if batch is not None:
            planned = batch.current(want, current)
            children = batch.children(want, children)
        source_size, source_features, source_info = self._source(want, planned, batch)
        actions, after, warnings = logic.plan(want, planned, children, source_size, source_features)
        if any(action[0] == "import" for action in actions):
            # checked before anything changes: a path qemu-img cannot be given
            logic.qemu_rbd_target(want["pool"], want["namespace"], want["name"], self.options["user"],
                                  self.options["conf"], self.options["keyring"], self.options["timeout"])
        return {"want": want, "ioctx": ioctx, "current": current, "actions": actions, "after": after,
                "warnings": warnings, "described": [logic.describe(want, action) for action in actions],
                "source_size": source_size, "source_features": source_features, "source_info": source_info}

    def _apply(self, entry):
        """The plan's actions, in order; the image's facts afterwards, checked
        against the plan. Raises _Failed with what was done and the image now."""
        want, ioctx, actions = entry["want"], entry["ioctx"], entry["actions"]
        self.source_info = entry["source_info"]
        done = 0
        try:
            for action in actions:
                getattr(self, "_do_" + action[0])(ioctx, want, *action[1:])
                done += 1
        except (rbd.Error, OSError, ParameterError, ModuleError) as exc:
            self._close()
            if isinstance(exc, (ParameterError, ModuleError)):
                message = str(exc)
            else:
                message = "%s failed: %s" % (logic.describe(want, actions[done]),
                                             explain(exc, want["pool"], self.options["timeout"]))
            if timed_out(exc):
                # the OSDs do not answer: the image cannot be read back either
                raise _Failed(message + " (what the image is now cannot be read)", done, None, exc)
            raise _Failed(message, done, read_image(ioctx, want)[0], exc)
        finally:
            self._close()
        actual, children = read_image(ioctx, want)
        if want["state"] == "absent":
            left = [("remove",)] if actual is not None else []
        elif actual is None:
            left = actions
        else:
            left = logic.plan(want, actual, children, entry["source_size"], entry["source_features"])[0]
        if left:
            raise _Failed("librbd did not take the change: still to do %s"
                          % ", ".join(logic.describe(want, action) for action in left), len(actions), actual)
        return actual

    def _source(self, want, current, batch=None):
        """The source's size, the features a new image gets and (for a file)
        qemu-img's info, read where the plan needs them: to create the image, or
        to know how far it may shrink."""
        source = want["source"]
        if want["state"] == "absent":
            return None, None, None
        creating = current is None
        shrinking = not creating and want["size"] is not None and want["size"] < current["size"]
        if source is None:
            return None, self._default_features() if creating else None, None
        if not (creating or shrinking):
            return None, None, None
        if source["kind"] == "clone":
            found = self._clone_source(source, creating, batch)
            if found is None:
                return None, None, None
            return found["size"], found["features"], None
        path = source["path"]
        if not os.path.isfile(path):
            if creating:
                raise ParameterError("source", "%s does not exist (or is not a file)" % path)
            return None, None, None
        info = self._file_info(path)
        return info["virtual-size"], self._default_features(), info

    def _default_features(self):
        if self.defaults is None:
            self.defaults = logic.features_from_conf(self.cluster.conf_get("rbd_default_features"))
        return list(self.defaults)

    def _clone_source(self, source, required, batch):
        """The source snapshot's size and features: as an earlier entry of the
        batch leaves it, or as the cluster has it (read once per run)."""
        try:
            found = batch.source(source) if batch is not None else None
            if found is None:
                found = self._read_source(source, batch)
        except ParameterError:
            if required:
                raise
            return None
        return found

    def _read_source(self, source, batch):
        if source["spec"] in self.sources:
            return self.sources[source["spec"]]
        image = logic.image_spec(source["pool"], source["namespace"], source["image"])
        later = batch.made_by(image) if batch is not None else None
        hint = "; %s makes it later in this batch: list it before the clones of it" % later if later else ""
        ioctx = self._ioctx(source["pool"], source["namespace"], "source", "source")
        try:
            with rbd.Image(ioctx, source["image"], read_only=True) as parent:
                names = [snap["name"] for snap in parent.list_snaps()]
                if source["snapshot"] not in names:
                    raise ParameterError("source", "image %s has no snapshot %s (it has: %s)%s"
                                         % (image, source["snapshot"], ", ".join(names) or "none", hint))
                parent.set_snap(source["snapshot"])
                found = {"size": parent.size(), "features": logic.feature_names(parent.features())}
        except rbd.ImageNotFound:
            raise ParameterError("source", "image %s does not exist%s" % (image, hint))
        self.sources[source["spec"]] = found
        return found

    def _qemu_img(self):
        qemu_img = self.module.get_bin_path("qemu-img")
        if qemu_img is None:
            raise ModuleError("qemu-img is not installed: importing a file needs it with its rbd driver (Debian "
                              "packages qemu-utils and qemu-block-extra)")
        return qemu_img

    def _file_info(self, path):
        rc, out, err = self.module.run_command([self._qemu_img(), "info", "--output=json", path])
        if rc != 0:
            raise ParameterError("source", "qemu-img cannot read %s: %s" % (path, err.strip() or out.strip()))
        try:
            info = json.loads(out)
        except ValueError:
            raise ModuleError("qemu-img info printed no JSON for %s: %s" % (path, out[:200]))
        if info.get("format") not in IMPORT_FORMATS:
            raise ParameterError("source", "%s is a %s image; a qcow2 or raw file can be imported"
                                 % (path, info.get("format")))
        return info

    # actions of the plan, applied in order

    def _image(self, ioctx, want):
        if self.handle is None:
            self.handle = rbd.Image(ioctx, want["name"])
        return self.handle

    def _close(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def _do_create(self, ioctx, want, size, features):
        rbd.RBD().create(ioctx, want["name"], size, old_format=False,
                         features=logic.feature_bits(features) if features is not None else None)

    def _do_clone(self, ioctx, want, source, features):
        parent = self._ioctx(source["pool"], source["namespace"], "source", "source")
        try:
            rbd.RBD().clone(parent, source["image"], source["snapshot"], ioctx, want["name"],
                            features=logic.feature_bits(features) if features is not None else None)
        except rbd.InvalidArgument:
            with rbd.Image(parent, source["image"], read_only=True) as image:
                protected = image.is_protected_snap(source["snapshot"])
            if not protected:
                raise ParameterError("source", "snapshot %s is not protected, and this cluster clones only protected "
                                               "snapshots (clone format 1): protect it (snapshots: [{name: %s, "
                                               "protected: true}] on the parent)"
                                     % (source["spec"], source["snapshot"]))
            raise
        except rbd.OSError as exc:
            if exc.errno == errno.EXDEV:
                raise ParameterError("source", "%s is in another namespace than %s, and this cluster makes clones "
                                               "across namespaces only in clone format 2 (all clients Mimic or "
                                               "newer: ceph osd set-require-min-compat-client mimic)"
                                     % (source["spec"], want["spec"]))
            raise

    def _do_import(self, ioctx, want, source, size, features):
        temporary = logic.import_name(want["name"])
        images = rbd.RBD()
        try:
            # what an interrupted import left behind
            images.remove(ioctx, temporary)
        except rbd.ImageNotFound:
            pass
        except rbd.ImageBusy:
            raise ModuleError("another import into %s seems to run: its temporary image %s is open"
                              % (want["spec"], temporary))
        images.create(ioctx, temporary, size, old_format=False,
                      features=logic.feature_bits(features) if features is not None else None)
        options = self.options
        target = logic.qemu_rbd_target(want["pool"], want["namespace"], temporary, options["user"], options["conf"],
                                       options["keyring"], options["timeout"])
        argv = [self._qemu_img(), "convert", "-n", "--target-is-zero", "-f", self.source_info["format"],
                "-O", "raw", source["path"], target]
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            images.remove(ioctx, temporary)
            hint = " (is qemu-block-extra, qemu-img's rbd driver, installed?)" if "rbd" in err and "protocol" in err \
                else ""
            raise ModuleError("qemu-img could not import %s into %s: %s%s"
                              % (source["path"], want["spec"], err.strip() or out.strip(), hint))
        images.rename(ioctx, temporary, want["name"])

    def _do_resize(self, ioctx, want, before, size):
        self._image(ioctx, want).resize(size, allow_shrink=size < before)

    def _do_flatten(self, ioctx, want, _parent):
        self._image(ioctx, want).flatten()

    def _do_disable_features(self, ioctx, want, names):
        self._image(ioctx, want).update_features(logic.feature_bits(names), False)

    def _do_enable_features(self, ioctx, want, names):
        image = self._image(ioctx, want)
        image.update_features(logic.feature_bits(names), True)
        if "object-map" in names:
            # librbd marks a newly enabled object map invalid until it is built
            image.rebuild_object_map()

    def _do_snapshot(self, ioctx, want, name):
        self._image(ioctx, want).create_snap(name)

    def _do_protect(self, ioctx, want, name):
        self._image(ioctx, want).protect_snap(name)

    def _do_unprotect(self, ioctx, want, name):
        try:
            self._image(ioctx, want).unprotect_snap(name)
        except rbd.ImageBusy:
            raise ModuleError("snapshot %s@%s still has clones: a flattened clone's own snapshots keep using it "
                              "unless the clone has the deep-flatten feature; remove those snapshots first"
                              % (want["spec"], name))

    def _do_remove_snapshot(self, ioctx, want, name):
        self._image(ioctx, want).remove_snap(name)

    def _do_flatten_children(self, ioctx, want, _name, children):
        for child in children:
            child_ioctx = self._ioctx(child["pool"], child["pool_namespace"], "force", "force")
            # a clone an earlier entry of the batch made has no id in the plan
            if child["id"]:
                image = rbd.Image(child_ioctx, image_id=child["id"])
            else:
                image = rbd.Image(child_ioctx, child["image"])
            with image:
                image.flatten()

    def _do_remove(self, ioctx, want):
        self._close()
        try:
            rbd.RBD().remove(ioctx, want["name"])
        except rbd.ImageBusy:
            raise ModuleError("image %s is in use: a client opened it while it was being removed" % want["spec"])
        except rbd.OSError as exc:
            if exc.errno != errno.EMLINK:
                raise
            try:
                with rbd.Image(ioctx, want["name"], read_only=True) as image:
                    group = "group %s" % image.group()["name"]
            except (rbd.Error, KeyError):
                group = "a group"
            raise ModuleError("image %s is in %s, and librbd removes no image of a group: remove it from the "
                              "group first (rbd group image remove)" % (want["spec"], group))


def _volume(entry, image, done):
    """An entry's result: the image, its facts and the first ``done`` of its actions."""
    return {"spec": entry["want"]["spec"], "image": image, "actions": entry["described"][:done], "changed": done > 0}


def read_image(ioctx, want):
    """The image's facts (None when it does not exist) and the clones of each snapshot."""
    try:
        image = rbd.Image(ioctx, want["name"], read_only=True)
    except rbd.ImageNotFound:
        return None, {}
    with image:
        try:
            spec = image.get_parent_image_spec()
            parent = logic.image_spec(spec["pool_name"], spec["pool_namespace"], spec["image_name"], spec["snap_name"])
        except rbd.ImageNotFound:
            parent = None
        snapshots, children = [], {}
        for snap in image.list_snaps():
            if snap.get("namespace", rbd.RBD_SNAP_NAMESPACE_TYPE_USER) != rbd.RBD_SNAP_NAMESPACE_TYPE_USER:
                continue
            image.set_snap(snap["name"])
            children[snap["name"]] = list(image.list_children2())
            image.set_snap(None)
            snapshots.append({"name": snap["name"], "size": snap["size"],
                              "protected": image.is_protected_snap(snap["name"]),
                              "children": len(children[snap["name"]])})
        facts = {"pool": want["pool"], "namespace": want["namespace"], "name": want["name"], "size": image.size(),
                 "features": logic.feature_names(image.features()), "parent": parent, "snapshots": snapshots,
                 "watchers": [watcher["addr"] for watcher in image.watchers_list()]}
    return facts, children


def main():
    CephRbdVolume.main()


if __name__ == "__main__":
    main()
