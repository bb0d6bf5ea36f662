# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: cluster
short_description: Tenant VMs of the cloud, read from the hypervisors' libvirt
version_added: 0.1.0
description:
  - Lists the tenant VMs of the cloud as they are, from the libvirt of every hypervisor, one inventory host per VM,
    with its tenant, flavor, image, networks, addresses, volumes, hypervisor and state as host variables and groups.
  - "A libvirt domain is a tenant VM when its XML has the collection's metadata element (namespace
    C(https://hardway.cloud/xmlns/instance/1)) holding a JSON object, as the P(hardway.cloud.kvm_instance#module)
    module writes it from its I(metadata) option: C({\"version\": 1, \"tenant\": \"acme\", \"instance\":
    \"web1\", \"flavor\": \"small\", \"image\": \"debian12\", \"networks\": [{\"name\": \"net100\",
    \"prefix\": \"2001:db8:100::/64\"}]}). Entry N of I(networks) belongs to the domain's Nth
    C(<interface type='bridge'>). Other keys are kept in C(hardway_vm_extra); a C(version) other than 1 is read as
    1, with a warning. Domains without the element are not listed; a domain whose element does not hold a JSON
    object is left out with a warning."
  - The inventory host name is the domain's name. A name found on two hypervisors is listed once, from the
    hypervisor that comes first in I(hypervisors), with a warning.
  - "Host variables (every value that came from a hypervisor is marked unsafe, so it is never templated):
    C(ansible_host) (the SLAAC address of the first NIC whose network has a /64 prefix; not set when there is
    none), C(hardway_vm_tenant), C(hardway_vm_instance), C(hardway_vm_flavor), C(hardway_vm_image) (from the
    metadata) and C(hardway_vm_extra) (the metadata's other keys, C({}) when there are none),
    C(hardway_vm_hypervisor) (the hypervisor's name), C(hardway_vm_state) (as virsh names it: C(running),
    C(idle), C(paused), C(in shutdown), C(shut off), C(crashed), C(pmsuspended), C(no state)),
    C(hardway_vm_vcpus), C(hardway_vm_memory) (MiB), C(hardway_vm_uuid), C(hardway_vm_networks) (one entry per
    bridge NIC with C(name), C(prefix), C(bridge), C(mac) and C(address)), C(hardway_vm_macs),
    C(hardway_vm_addresses), C(hardway_vm_volumes) (sources of the writable disks, C(POOL/IMAGE) for Ceph RBD, the
    path for files and devices) and C(hardway_vm_seed) (the source of the read-only cloud-init seed disk, C(null)
    without one)."
  - "Groups: C(hardway_instances) (every tenant VM), C(tenant_TENANT), C(network_NETWORK), C(hypervisor_HYPERVISOR)
    and C(state_STATE) (for example C(state_running), C(state_shut_off)), with characters that are not valid in group
    names replaced by C(_); plus those of I(groups) and I(keyed_groups)."
  - Hypervisors are queried in parallel, read-only, with one bulk call for the domains and their states and one
    call per domain for its XML. A hypervisor that cannot be reached or fails while it is listed is left out with a
    warning that names it and gives libvirt's error (or the inventory fails, see I(unreachable)).
author: hardway.cloud developers (!UNKNOWN)
requirements:
  - libvirt Python bindings on the controller (Debian package python3-libvirt, or libvirt-python from PyPI)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    type: str
    required: true
    choices: [hardway.cloud.cluster]
  hypervisors:
    description:
      - The hypervisors, each a libvirt URI (C(qemu+ssh://root@hv1/system),
        C(qemu+libssh://root@[fd00::12]/system?keyfile=/path/key&known_hosts=/path/known_hosts),
        C(qemu:///system), C(test:///path/to/node.xml)) or a dict with C(uri), and optionally C(name) and C(timeout).
      - A hypervisor's name (for C(hardway_vm_hypervisor) and its group) is the entry's C(name); without one the host
        part of the URI (brackets of an IPv6 address removed); for a URI without a host (C(qemu:///system)) the host
        name libvirt reports.
      - Connections are read-only. Over SSH, add C(no_tty=1) to the URI so that a missing key fails instead of
        asking for a password.
      - Strings in the list are templated, so that a URI can name a key file given by an environment variable with
        the C(env) lookup (see the AWX example); the templates see no inventory variables.
    type: list
    elements: raw
    required: true
  unreachable:
    description:
      - What a hypervisor that cannot be reached (a libvirt error when connecting or listing, or no answer within
        I(timeout)) does to the inventory. C(warn) leaves its VMs out with a warning and lists the others. C(fail)
        fails the inventory source with an error naming the hypervisor.
      - Ansible itself only warns about an inventory source that fails; set C(ANSIBLE_INVENTORY_UNPARSED_FAILED=true)
        (or C(unparsed_is_failed) in C(ansible.cfg)) to make the run fail.
    type: str
    choices: [warn, fail]
    default: warn
  timeout:
    description:
      - Seconds a hypervisor has to answer (connect, list its domains and their XML); one that takes longer counts
        as unreachable. A hypervisor entry's C(timeout) overrides it.
    type: float
    default: 30
  workers:
    description: How many hypervisors are queried at the same time (a thread each).
    type: int
    default: 16
"""

EXAMPLES = r"""
# lab.cluster.yml (the file name must end in cluster.yml or cluster.yaml)
plugin: hardway.cloud.cluster
hypervisors:
  - qemu+ssh://root@hv1/system?no_tty=1
  - name: hv2
    uri: qemu+libssh://root@[fd00::12]/system?keyfile=/etc/hardway/id_ed25519&known_hosts=/etc/hardway/known_hosts
timeout: 10

---
# Fail instead of leaving out an unreachable hypervisor's VMs, and add groups
# and variables of your own from the host variables
plugin: hardway.cloud.cluster
hypervisors:
  - qemu+ssh://root@hv1/system?no_tty=1
  - qemu+ssh://root@hv2/system?no_tty=1
unreachable: fail
compose:
  ansible_user: "'debian'"
groups:
  stopped: hardway_vm_state != 'running'
keyed_groups:
  - key: hardway_vm_flavor
    prefix: flavor
  - key: hardway_vm_image
    prefix: image

---
# With a cache: a run within cache_timeout of the last complete one connects
# to no hypervisor (ansible-inventory --flush-cache and meta: refresh_inventory
# ask them again)
plugin: hardway.cloud.cluster
hypervisors:
  - qemu+ssh://root@hv1/system?no_tty=1
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /var/cache/ansible/hardway-inventory
cache_timeout: 300

---
# AWX / Automation Controller: an inventory source "Sourced from a Project"
# whose inventory file is this file in the project (inventories/cloud.cluster.yml),
# with the collection in the project's collections/requirements.yml, an
# execution environment with the libvirt bindings (python3-libvirt or
# libvirt-python, as in the collection's bindep.txt) and openssh-client, and a
# credential of a custom type whose injectors write the SSH key and the
# hypervisors' known_hosts to files and name them in environment variables:
#   file: {template.key: "{{ ssh_key }}", template.known_hosts: "{{ known_hosts }}"}
#   env: {HARDWAY_SSH_KEY: "{{ tower.filename.key }}", HARDWAY_KNOWN_HOSTS: "{{ tower.filename.known_hosts }}"}
# Strings in hypervisors are templated, so the URIs can name those files.
plugin: hardway.cloud.cluster
hypervisors:
  - name: hv1
    uri: >-
      qemu+libssh://root@hv1.example.org/system?no_tty=1&keyfile={{ lookup('env', 'HARDWAY_SSH_KEY')
      }}&known_hosts={{ lookup('env', 'HARDWAY_KNOWN_HOSTS') }}
unreachable: fail
"""

import queue
import threading
import time

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.hardway.cloud.plugins.module_utils import cluster_state

try:
    import libvirt
except ImportError:
    libvirt = None

# the version of what is kept in the cache
CACHE_VERSION = 1


def _quiet(_context, _error):
    """libvirt's default error handler prints every error on stderr; they are
    raised as exceptions anyway."""


def query(uri, name):
    """One hypervisor's tenant VMs: (name, records, warnings), read-only,
    with one bulk call for the domains and their states and one XMLDesc per
    domain. Runs in a thread of its own: the records are made here, while
    other hypervisors are still answering."""
    conn = libvirt.openReadOnly(uri)
    try:
        if name is None:
            name = conn.getHostname()
        try:
            listed = [(domain, stats.get("state.state")) for domain, stats
                      in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)]
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            listed = [(domain, None) for domain in conn.listAllDomains()]
        domains = []
        # in the order of their names, for an inventory that reads the same every time
        for domain, state in sorted(listed, key=lambda item: item[0].name()):
            try:
                if state is None:
                    state = domain.state()[0]
                domains.append((domain.XMLDesc(0), state))
            except libvirt.libvirtError as exc:
                # gone between the listing and now: not there
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
    finally:
        conn.close()
    # the records are plain values made from libvirt's answers, none of them
    # trusted as a template (and set_variable keeps them so: trusted_by_default
    # below); the hypervisor's name may come from the configuration, whose
    # strings are trusted: it is marked unsafe here
    records, warnings = cluster_state.instances(wrap_var(name), domains)
    return name, records, warnings


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "hardway.cloud.cluster"
    # Ansible stores what the plugin sets as not trusted as a template (unsafe):
    # the records rely on it instead of being copied through wrap_var
    trusted_by_default = False

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(("cluster.yml", "cluster.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        try:
            entries = self.templar.template(self.get_option("hypervisors"))
        except Exception as exc:  # pylint: disable=broad-except
            raise AnsibleParserError("%s: hypervisors: %s" % (path, to_native(exc)))
        try:
            targets = cluster_state.hypervisors(entries, self.get_option("timeout"))
        except ValueError as exc:
            raise AnsibleParserError("%s: %s" % (path, exc))

        use_cache = self.get_option("cache")
        cache_key = self.get_cache_key(path)
        records = None
        if use_cache and cache:
            cached = self._cache.get(cache_key)
            if isinstance(cached, dict) and cached.get("version") == CACHE_VERSION and cached.get("complete"):
                # what a cache plugin returns is marked unsafe again, as what libvirt returns is
                records = wrap_var(cached["instances"])
        if records is None:
            records, complete = self._instances(targets)
            if use_cache:
                # a partial result is kept for a later run's cache read to ignore
                self._cache[cache_key] = {"version": CACHE_VERSION, "complete": complete, "instances": records}
        self._populate(records)

    def _instances(self, targets):
        """The instance records of every hypervisor, merged, and whether every
        hypervisor answered."""
        if libvirt is None:
            raise AnsibleParserError("The hardway.cloud.cluster inventory needs the libvirt Python bindings on the "
                                     "controller: install python3-libvirt (Debian, Ubuntu) or libvirt-python (pip) "
                                     "where ansible runs (in AWX: in the execution environment)")
        libvirt.registerErrorHandler(_quiet, None)
        answers = self._query_all(targets)
        results, complete = [], True
        for target, answer in zip(targets, answers):
            if isinstance(answer, tuple):
                _name, records, warnings = answer
                for warning in warnings:
                    self.display.warning("hardway.cloud.cluster: " + warning)
                results.append(records)
                continue
            complete = False
            if isinstance(answer, str):
                reason = answer
            elif isinstance(answer, libvirt.libvirtError):
                reason = "libvirt error: %s" % to_native(answer).strip()
            else:
                reason = "%s: %s" % (type(answer).__name__, to_native(answer))
            label = "%s (%s)" % (target["name"], target["uri"]) if target["name"] else target["uri"]
            message = "hypervisor %s is unreachable: %s" % (label, reason)
            if self.get_option("unreachable") == "fail":
                raise AnsibleParserError("hardway.cloud.cluster: " + message)
            self.display.warning("hardway.cloud.cluster: %s; its VMs are left out of the inventory" % message)
        merged, warnings = cluster_state.merge(results)
        for warning in warnings:
            self.display.warning("hardway.cloud.cluster: " + warning)
        return merged, complete

    def _query_all(self, targets):
        """query() of every target in daemon threads, at most ``workers`` at a
        time: per target its answer, the libvirt exception, or a message when
        it did not answer within its timeout (its thread is abandoned)."""
        answers = [None] * len(targets)
        done = queue.Queue()
        pending = list(range(len(targets)))
        running = {}  # index: deadline
        workers = max(1, self.get_option("workers"))

        def work(index):
            target = targets[index]
            try:
                done.put((index, query(target["uri"], target["name"])))
            except Exception as exc:  # pylint: disable=broad-except
                done.put((index, exc))

        while pending or running:
            while pending and len(running) < workers:
                index = pending.pop(0)
                running[index] = time.monotonic() + targets[index]["timeout"]
                threading.Thread(target=work, args=(index,), name="hardway-cluster-%d" % index, daemon=True).start()
            try:
                index, answer = done.get(timeout=max(0, min(running.values()) - time.monotonic()))
            except queue.Empty:
                now = time.monotonic()
                for index, deadline in list(running.items()):
                    if deadline <= now:
                        answers[index] = "no answer within its timeout of %g seconds" % targets[index]["timeout"]
                        del running[index]
                continue
            if index in running:
                answers[index] = answer
                del running[index]
        return answers

    def _populate(self, records):
        strict = self.get_option("strict")
        compose, groups, keyed_groups = self.get_option("compose"), self.get_option("groups"), \
            self.get_option("keyed_groups")
        self.inventory.add_group(cluster_state.INSTANCES_GROUP)
        added = {}  # group name: the inventory's (sanitized) group, added once
        for record in records:
            host = self.inventory.add_host(record["name"])
            for key, value in cluster_state.hostvars(record).items():
                self.inventory.set_variable(host, key, value)
            for name in cluster_state.groups(record):
                group = added.get(name)
                if group is None:
                    group = added[name] = self.inventory.add_group(self._sanitize_group_name(name))
                self.inventory.add_child(group, host)
            if compose or groups or keyed_groups:
                variables = self.inventory.get_host(host).get_vars()
                self._set_composite_vars(compose, variables, host, strict=strict)
                self._add_host_to_composed_groups(groups, variables, host, strict=strict)
                self._add_host_to_keyed_groups(keyed_groups, variables, host, strict=strict)
