# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options every Ceph module shares (documented in the
hardway.cloud.ceph doc fragment) and one way to connect with them: librados
through the rados bindings, with every wait bounded by ``timeout`` so an
unreachable cluster is a clear failure, never a hang."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import re

from ansible_collections.hardway.cloud.plugins.module_utils.base import ModuleError, ParameterError

try:
    import rados
    HAS_RADOS = True
except ImportError:
    rados = None
    HAS_RADOS = False

PACKAGES = "rados and rbd (Debian packages python3-rados, python3-rbd)"

CEPH_ARGUMENT_SPEC = dict(
    conf=dict(type="path", default="/etc/ceph/ceph.conf"),
    keyring=dict(type="path", no_log=False),
    user=dict(type="str", default="admin", aliases=["client"]),
    cluster=dict(type="str", default="ceph"),
    timeout=dict(type="int", default=30),
)

USER = re.compile(r"^[A-Za-z0-9_.-]+\Z")
# a pool, namespace, image or snapshot name. Ceph takes more, but these are
# what goes unquoted and unambiguous into the rbd CLI's specs (pool/image@snap),
# QEMU's rbd: targets (: and = separate options there), libvirt's XML, a
# configuration file and a command line (no leading '-')
NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*\Z")


def timed_out(exc):
    """Whether a rados or rbd error is librados giving up on an operation
    after its timeout (both bindings raise it with errno ETIMEDOUT)."""
    return getattr(exc, "errno", None) in (errno.ETIMEDOUT, -errno.ETIMEDOUT)


def osds_down(pool, timeout, doing):
    """What to say when the OSDs did not answer ``doing`` something in ``pool``
    (the monitors answered: the client is connected)."""
    return ("the OSDs of pool %s did not answer within %d s (timeout)%s: are they up, and are the pool's placement "
            "groups active?" % (pool, timeout, " " + doing if doing else ""))


def explain(exc, pool, timeout, doing=""):
    """A rados or rbd error as a message: a timeout names the OSDs."""
    return osds_down(pool, timeout, doing) if timed_out(exc) else str(exc)


def check_name(parameter, value, what):
    """A pool, namespace, image or snapshot name (``what`` says which)."""
    if not isinstance(value, str) or not NAME.match(value):
        raise ParameterError(parameter, "%r is not a Ceph %s name: letters, digits, '.', '_' and '-' (not first)"
                             % (value, what))
    return value


def ceph_argument_spec(**spec):
    """A module's argument spec with the connection options added."""
    merged = dict(CEPH_ARGUMENT_SPEC)
    merged.update(spec)
    return merged


def client_name(parameter, value):
    """A Ceph client's name without ``client.`` (admin, hypervisor)."""
    user = value[len("client."):] if isinstance(value, str) and value.startswith("client.") else value
    if not isinstance(user, str) or not USER.match(user):
        raise ParameterError(parameter, "%r is not a Ceph client name (e.g. admin or hypervisor for client.hypervisor)"
                             % (value,))
    return user


def connection_options(params):
    """The checked connection options: conf, keyring, user (without ``client.``), cluster, timeout."""
    conf, keyring = params["conf"], params.get("keyring")
    if not os.path.isfile(conf):
        raise ParameterError("conf", "%s does not exist (the cluster's ceph.conf, with its mon_host)" % conf)
    if keyring is not None and not os.path.isfile(keyring):
        raise ParameterError("keyring", "%s does not exist" % keyring)
    user = client_name("user", "admin" if params.get("user") is None else params["user"])
    cluster = "ceph" if params.get("cluster") is None else params["cluster"]
    if not isinstance(cluster, str) or not USER.match(cluster):
        raise ParameterError("cluster", "%r is not a cluster name" % (cluster,))
    timeout = params.get("timeout")
    if timeout is None or timeout < 1:
        raise ParameterError("timeout", "must be at least 1 second")
    return {"conf": conf, "keyring": keyring, "user": user, "cluster": cluster, "timeout": timeout}


class Cluster(object):
    """A connected librados client; use as a context manager.

    librados' own timeouts bound every wait: the connection (monitors and
    authentication), each monitor command and each OSD operation (which is
    what librbd's calls come down to). Its log lines stay off the module's
    stderr."""

    def __init__(self, options):
        self.options = options
        self.handle = None

    def where(self):
        return "cluster %s (conf %s)" % (self.options["cluster"], self.options["conf"])

    def __enter__(self):
        options = self.options
        timeout = str(options["timeout"])
        conf = {"rados_osd_op_timeout": timeout, "rados_mon_op_timeout": timeout, "client_mount_timeout": timeout,
                "log_to_stderr": "false", "err_to_stderr": "false"}
        if options["keyring"]:
            conf["keyring"] = options["keyring"]
        try:
            self.handle = rados.Rados(conffile=options["conf"], rados_id=options["user"],
                                      clustername=options["cluster"], conf=conf)
        except rados.Error as exc:
            raise ParameterError("conf", "librados cannot read %s: %s" % (options["conf"], exc))
        try:
            self.handle.connect(timeout=options["timeout"])
        except rados.TimedOut:
            self._shutdown()
            raise ModuleError("%s did not answer within %d s (timeout): are its monitors (mon_host) reachable and "
                              "running?" % (self.where(), options["timeout"]))
        except rados.PermissionDeniedError:
            self._shutdown()
            raise ModuleError("%s refused client.%s: check user and the key in %s"
                              % (self.where(), options["user"], options["keyring"] or "the default keyring"))
        except rados.ObjectNotFound:
            self._shutdown()
            raise ModuleError("cannot connect to %s as client.%s: no keyring found (%s)%s"
                              % (self.where(), options["user"], options["keyring"] or "the default keyrings",
                                 "" if options["keyring"] else "; set keyring"))
        except rados.Error as exc:
            self._shutdown()
            raise ModuleError("cannot connect to %s as client.%s: %s" % (self.where(), options["user"], exc))
        return self

    def _shutdown(self):
        if self.handle is not None:
            self.handle.shutdown()
            self.handle = None

    def __exit__(self, *exc_info):
        self._shutdown()
        return False

    def conf_get(self, key):
        return self.handle.conf_get(key)

    def ioctx(self, pool, namespace="", parameter="pool"):
        """An I/O context on ``pool`` (in ``namespace``); a missing pool is bad input of ``parameter``."""
        try:
            ioctx = self.handle.open_ioctx(pool)
        except rados.ObjectNotFound:
            raise ParameterError(parameter, "pool %s does not exist in %s" % (pool, self.where()))
        except rados.Error as exc:
            raise ModuleError("cannot open pool %s of %s: %s" % (pool, self.where(), exc))
        if namespace:
            ioctx.set_namespace(namespace)
        return ioctx


class Clusters(object):
    """The Ceph connections of a module run, one per set of connection options,
    each opened when first needed; ``close()`` ends them all."""

    def __init__(self):
        self.open = {}

    def get(self, options):
        key = tuple(sorted(options.items()))
        if key not in self.open:
            self.open[key] = Cluster(options).__enter__()
        return self.open[key]

    def close(self):
        for cluster in self.open.values():
            cluster.__exit__(None, None, None)
        self.open = {}
