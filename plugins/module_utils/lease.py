# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lease: a lock that a run holds until it releases it or until it expires
(so a run that died never blocks the cloud for good), named by its owner (a
token of the run, the same from every host and process of it) and described
by its holder (who runs what, for the message of a run that has to wait).

Pure logic: the record a lease is stored as, and what a run does given the
record it finds. hardway.cloud.ceph_lock stores the record in a RADOS object
and changes it only by compare-and-swap on the object's version."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import json
import os
import re
import time

from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

OWNER = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}\Z")
HOLDER_MAX = 300
FORMAT = "hardway.cloud lease 1"

# what a run does with the lease it finds
ACQUIRE = "acquire"   # free, expired, or broken with force: take it
RENEW = "renew"       # already the owner's: push its expiry on
WAIT = "wait"         # another run's: wait for it to go, or fail
RELEASE = "release"   # the owner's, state unlocked: give it up
BREAK = "break"       # another run's, unlocked with force: remove it
NOTHING = "nothing"


def check_owner(parameter, value):
    if not isinstance(value, str) or not OWNER.match(value):
        raise ParameterError(parameter, "%r is not a lock owner: 1 to 128 letters, digits, '.', '_', ':', '@' or '-'"
                             % (value,))
    return value


def check_holder(parameter, value):
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(parameter, "must say who holds the lock (e.g. 'alice on ops1: tenants.yml')")
    if len(value) > HOLDER_MAX:
        raise ParameterError(parameter, "is %d characters long; at most %d" % (len(value), HOLDER_MAX))
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ParameterError(parameter, "%r has control characters (a newline, a tab, an escape)" % (value,))
    return value


def new_owner():
    """A token no other run has."""
    return binascii.hexlify(os.urandom(16)).decode("ascii")


def record(owner, holder, duration, now=None, since=None):
    """The lease of ``owner`` from ``since`` (now) until ``duration`` seconds from ``now``."""
    now = time.time() if now is None else now
    return {"format": FORMAT, "owner": owner, "holder": holder, "since": int(since if since is not None else now),
            "expires": int(now + duration)}


def dumps(lease):
    return json.dumps(lease, sort_keys=True).encode("utf-8")


def loads(data):
    """The lease stored as ``data`` (bytes); None for an empty object (a
    released lease); ValueError when it is not a lease record."""
    if not data:
        return None
    try:
        lease = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("its data is not a lease record")
    if not isinstance(lease, dict) or lease.get("format") != FORMAT:
        raise ValueError("its data is not a lease record (%s)" % FORMAT)
    for key, kind in (("owner", str), ("holder", str), ("since", int), ("expires", int)):
        if not isinstance(lease.get(key), kind) or isinstance(lease.get(key), bool):
            raise ValueError("its lease record has no valid %s" % key)
    return lease


def expired(lease, now):
    return lease["expires"] <= now


def plan(state, lease, owner, now, force=False):
    """What a run of ``owner`` does to reach ``state`` (locked, unlocked)
    when it finds ``lease`` (None: nobody holds it)."""
    if state == "locked":
        if lease is None or expired(lease, now):
            return ACQUIRE
        if lease["owner"] == owner:
            return RENEW
        return ACQUIRE if force else WAIT
    if lease is None:
        return NOTHING
    if lease["owner"] == owner:
        return RELEASE
    return BREAK if force else NOTHING


def describe(lease, now):
    """Who holds ``lease``, since when and for how long, for a message."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lease["since"]))
    left = lease["expires"] - now
    if left > 0:
        until = "expires in %d s" % left
    else:
        until = "expired %d s ago" % -left
    return "%s (owner %s) since %s, %s" % (lease["holder"], lease["owner"], since, until)


def public(lease):
    """The lease as the module returns it (times as seconds since the epoch)."""
    if lease is None:
        return None
    return dict((key, lease[key]) for key in ("owner", "holder", "since", "expires"))
