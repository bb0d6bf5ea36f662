#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ceph_lock
short_description: A lease in Ceph that serialises runs across hosts (one run at a time changes the cloud)
version_added: 0.1.0
description:
  - Takes (C(state=locked)) or gives up (C(state=unlocked)) a lease stored in one RADOS object (I(name) in I(pool)).
    Every host and every run that reaches the cluster sees it, so two runs of a playbook started at the same time
    by two operators (or two AWX jobs) take turns instead of both changing the same instances.
  - A lease belongs to an I(owner), a token of the run (the same on every host of it) and says who holds it
    (I(holder)). It ends when its owner releases it, or I(duration) seconds after it was last taken or renewed, so a
    run that died (killed, its controller lost) blocks others for at most that long.
  - The lease is changed only by compare-and-swap on the object's version (an exclusive create when there is none),
    so of two runs that find it free at the same moment exactly one takes it; the other finds it held.
  - A lease held by another owner is waited for, up to I(wait) seconds, then the task fails naming its holder, since
    when it is held and when it expires. Another owner's lease is only taken away with I(force) (never implicitly);
    an expired one is taken over, with a warning.
  - Taking the lease again with the same I(owner) renews it (its expiry moves on); this is not a change.
  - It is advisory, it keeps out the runs that take it and nothing else.
author: hardway.cloud developers (!UNKNOWN)
extends_documentation_fragment:
  - hardway.cloud.attributes
  - hardway.cloud.ceph
options:
  pool:
    description: The pool the lease's object is in (e.g. the pool of the instances' volumes).
    type: str
    required: true
  namespace:
    description: The RADOS namespace of the object within I(pool); none is the pool's default namespace.
    type: str
    default: ""
  name:
    description: The lease's object, e.g. C(hardway.tenants) for the runs that change the tenant instances.
    type: str
    required: true
  state:
    description:
      - C(locked), the lease is I(owner)'s (taken, waited for, or renewed); C(unlocked), I(owner) does not hold it
        (with I(force), nobody does).
    type: str
    choices: [locked, unlocked]
    default: locked
  owner:
    description:
      - The token of the run that holds the lease. Give the same one to every task (and host) of a run and to its
        release; the module returns it.
      - With C(state=locked) and no owner, a new random token is made (a new run).
      - Needed with C(state=unlocked), unless I(force) removes whoever's lease it is.
    type: str
  holder:
    description:
      - Who holds the lease, shown to the runs that wait for it or are refused, e.g. C(alice on ops1, tenants.yml).
        At most 300 characters, no control characters.
      - Default, the user the module runs as and the host it runs on.
    type: str
  duration:
    description:
      - Seconds the lease lasts after it is taken or renewed unless released. Longer than the longest run that
        holds it; a run that dies holds it this long at most.
    type: int
    default: 3600
  wait:
    description: Seconds to wait for a lease that another owner holds before the task fails (0, fail at once).
    type: int
    default: 0
  force:
    description:
      - Take away another owner's lease that has not expired. With C(state=locked) the lease is then I(owner)'s;
        with C(state=unlocked) nobody's. Only for a run that is known to be gone (a run that still runs would go
        on without the lease).
    type: bool
    default: false
notes:
  - The lease's expiry is compared with the clock of the host the module runs on; hosts' clocks must agree to within
    a small part of I(duration) (Ceph's monitors need synchronised clocks as well).
  - The client (I(user)) needs to read and write objects of I(pool), e.g. C(osd 'profile rbd pool=vms').
seealso:
  - module: hardway.cloud.ceph_rbd_volume
"""

EXAMPLES = r"""
- name: Take the cloud's tenant lease (wait up to 15 minutes for a run that holds it)
  hardway.cloud.ceph_lock:
    pool: vms
    name: hardway.tenants
    holder: "{{ lookup('ansible.builtin.env', 'USER') }}: tenants.yml"
    wait: 900
  run_once: true
  register: tenant_lease

- name: Give it up at the end of the run
  hardway.cloud.ceph_lock:
    pool: vms
    name: hardway.tenants
    owner: "{{ tenant_lease.owner }}"
    state: unlocked
  run_once: true

- name: Remove the lease of a run that is known to be gone (its controller died)
  hardway.cloud.ceph_lock:
    pool: vms
    name: hardway.tenants
    state: unlocked
    force: true
"""

RETURN = r"""
owner:
  description: The owner the task acted for (the one given or the new one).
  returned: always
  type: str
  sample: 5f0c2a7e9b1d4c3a8e6f0b2d4a6c8e0f
lease:
  description: The lease after the run (null when nobody holds it); times in seconds since the epoch.
  returned: always
  type: dict
  sample: {owner: 5f0c2a7e9b1d4c3a8e6f0b2d4a6c8e0f, holder: "alice on ops1: tenants.yml", since: 1795292400,
           expires: 1795296000}
previous:
  description: The lease found before the run when it was another owner's (taken over, broken, or waited for).
  returned: always
  type: dict
  sample: {owner: 0d3e, holder: "bob on ops2: tenants.yml", since: 1795288000, expires: 1795291600}
waited:
  description: Seconds the task waited for another owner's lease.
  returned: always
  type: float
  sample: 42.5
"""

import getpass
import os
import socket
import time

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.hardway.cloud.plugins.module_utils import lease as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import HardwayModule, ModuleError, ParameterError
from ansible_collections.hardway.cloud.plugins.module_utils.ceph import (
    HAS_RADOS, PACKAGES, Cluster, ceph_argument_spec, check_name, connection_options, osds_down, rados)

# how often a held lease is read again while waiting for it
POLL = 2.0
DURATION_MAX = 7 * 24 * 3600


def _default_holder():
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "uid %d" % os.getuid()
    return "%s on %s" % (user, socket.gethostname())


class CephLock(HardwayModule):
    argument_spec = ceph_argument_spec(
        pool=dict(type="str", required=True),
        namespace=dict(type="str", default=""),
        name=dict(type="str", required=True),
        state=dict(type="str", default="locked", choices=["locked", "unlocked"]),
        owner=dict(type="str"),
        holder=dict(type="str"),
        duration=dict(type="int", default=3600),
        wait=dict(type="int", default=0),
        force=dict(type="bool", default=False),
    )

    def wanted(self):
        params = self.params
        check_name("pool", params["pool"], "pool")
        if params["namespace"]:
            check_name("namespace", params["namespace"], "namespace")
        check_name("name", params["name"], "object")
        if params["owner"] is not None:
            logic.check_owner("owner", params["owner"])
        elif params["state"] == "unlocked" and not params["force"]:
            raise ParameterError("owner", "is needed to release a lease (the owner its state=locked task returned), "
                                          "or force to remove whoever's it is")
        if params["holder"] is not None:
            logic.check_holder("holder", params["holder"])
        if not 1 <= params["duration"] <= DURATION_MAX:
            raise ParameterError("duration", "must be 1 to %d seconds, not %d" % (DURATION_MAX, params["duration"]))
        if params["wait"] < 0:
            raise ParameterError("wait", "must be 0 or more seconds, not %d" % params["wait"])
        return params["owner"] or logic.new_owner(), params["holder"] or _default_holder()

    def run(self):
        if not HAS_RADOS:
            self.module.fail_json(msg=missing_required_lib(PACKAGES))
        owner, holder = self.wanted()
        options = connection_options(self.params)
        self.result.update(owner=owner, lease=None, previous=None, waited=0.0)
        with Cluster(options) as cluster:
            ioctx = cluster.ioctx(self.params["pool"], self.params["namespace"])
            try:
                Lease(self, ioctx, owner, holder).converge()
            finally:
                ioctx.close()


class Lease(object):
    """The lease object of one run of the module."""

    def __init__(self, module, ioctx, owner, holder):
        self.module = module
        self.params = module.params
        self.ioctx = ioctx
        self.owner = owner
        self.holder = holder
        self.where = "%s/%s%s" % (self.params["pool"], self.params["namespace"] + "/" if self.params["namespace"]
                                  else "", self.params["name"])

    def read(self):
        """(lease, version) of the object now; (None, None) when there is no object."""
        name = self.params["name"]
        try:
            data = self.ioctx.read(name, 65536)
            version = self.ioctx.get_last_version()
        except rados.ObjectNotFound:
            return None, None
        except rados.TimedOut:
            raise ModuleError(self.osds_down("reading"))
        except rados.Error as exc:
            raise ModuleError("cannot read the lease %s: %s" % (self.where, exc))
        try:
            return logic.loads(data), version
        except ValueError as exc:
            raise ModuleError("object %s is not a lease: %s (give another name)" % (self.where, exc),
                              parameter="name")

    def osds_down(self, doing):
        return osds_down(self.params["pool"], self.params["timeout"], "%s the lease %s" % (doing, self.where))

    def swap(self, version, data):
        """Replace the object of ``version`` (None: there is none) with
        ``data`` (None: remove it); False when another run changed it first."""
        op = self.ioctx.create_write_op()
        try:
            if version is None:
                op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
            else:
                op.assert_version(version)
            if data is None:
                op.remove()
            else:
                op.write_full(data)
            self.ioctx.operate_write_op(op, self.params["name"])
        except (rados.ObjectExists, rados.ObjectNotFound):
            return False
        except rados.TimedOut:
            raise ModuleError(self.osds_down("writing"))
        except rados.Error as exc:
            # a version that no longer matches: ERANGE (newer) or EOVERFLOW
            if getattr(exc, "errno", None) in (34, 75) or "Numerical result" in str(exc):
                return False
            raise ModuleError("cannot write the lease %s: %s" % (self.where, exc))
        finally:
            self.ioctx.release_write_op(op)
        return True

    def converge(self):
        params, result = self.params, self.module.result
        started = time.monotonic()
        deadline = started + params["wait"]
        waited = False
        while True:
            lease, version = self.read()
            now = time.time()
            action = logic.plan(params["state"], lease, self.owner, now, params["force"])
            if lease is not None and lease["owner"] != self.owner:
                result["previous"] = logic.public(lease)
            if action == logic.WAIT:
                if self.module.check_mode:
                    self.module.module.warn("%s is held by %s; a run would wait for it up to %d s (wait)"
                                            % (self.where, logic.describe(lease, now), params["wait"]))
                    result["lease"] = logic.public(lease)
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    result["lease"] = logic.public(lease)
                    result["waited"] = round(time.monotonic() - started, 1)
                    raise ModuleError(
                        "%s is held by %s. Waited %d s (wait). If that run is gone, release its lease with "
                        "state=unlocked, force=true (or wait until it expires)"
                        % (self.where, logic.describe(lease, now), params["wait"]), parameter="wait")
                time.sleep(min(POLL, left))
                waited = True
                continue
            if not self.apply(action, lease, version, now):
                continue  # another run changed it between the read and the write: look again
            break
        result["waited"] = round(time.monotonic() - started, 1) if waited else 0.0
        self.module.set_diff(_shown(lease), _shown(result["lease"]))

    def apply(self, action, lease, version, now):
        """Do ``action``; False when the object changed since it was read."""
        params, result, check = self.params, self.module.result, self.module.check_mode
        if action in (logic.ACQUIRE, logic.RENEW):
            since = lease["since"] if action == logic.RENEW else now
            new = logic.record(self.owner, self.holder, params["duration"], now=now, since=since)
            if action == logic.ACQUIRE:
                result["changed"] = True
                if lease is not None and lease["owner"] != self.owner:
                    how = "took over" if logic.expired(lease, now) else "broke (force)"
                    self.module.module.warn("%s the lease %s of %s" % (how, self.where, logic.describe(lease, now)))
            if not check and not self.swap(version, logic.dumps(new)):
                return False
            result["lease"] = logic.public(new)
            return True
        if action in (logic.RELEASE, logic.BREAK):
            result["changed"] = True
            if action == logic.RELEASE and logic.expired(lease, now):
                self.module.module.warn("the lease %s of this run expired %d s before it was released: another run "
                                        "could have taken it meanwhile (raise duration)"
                                        % (self.where, now - lease["expires"]))
            if action == logic.BREAK:
                self.module.module.warn("removed the lease %s of %s (force)" % (self.where, logic.describe(lease, now)))
            if not check and not self.swap(version, None):
                return False
            result["lease"] = None
            return True
        result["lease"] = logic.public(lease)
        return True


def _shown(lease):
    """A lease as the diff shows it: who holds it, not its expiry (a renewal is no change)."""
    if lease is None:
        return {}
    return {"owner": lease["owner"], "holder": lease["holder"], "since": lease["since"]}


def main():
    CephLock.main()


if __name__ == "__main__":
    main()
