# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt connections whose waits are bounded. Opening one gives up after
a timeout (a daemon that hangs accepts the connection and never answers),
and once it is open, libvirt's keepalive closes it when the daemon stops
answering for about as long, so no later call waits for ever either.
Keepalive needs libvirt's event loop: it runs in a thread of its own."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.hardway.cloud.plugins.module_utils.base import ModuleError

try:
    import libvirt
except ImportError:
    libvirt = None

# keepalive probes sent before a silent daemon's connection is closed
KEEPALIVE_COUNT = 3
_LOOP = []


def _event_loop():
    """libvirt's default event loop, registered and run once per process."""
    if _LOOP:
        return
    libvirt.virEventRegisterDefaultImpl()

    def run():
        while True:
            libvirt.virEventRunDefaultImpl()

    thread = threading.Thread(target=run, name="libvirt-events")
    thread.daemon = True
    thread.start()
    _LOOP.append(thread)


def open_connection(uri, timeout, read_only=False):
    """A connection to ``uri``. Raises ModuleError (naming ``uri``) when
    libvirt refuses it or does not answer within ``timeout`` seconds (the
    thread that waits is abandoned)."""
    _event_loop()
    box = {}

    def connect():
        try:
            box["conn"] = libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)
        except libvirt.libvirtError as exc:
            box["error"] = exc

    thread = threading.Thread(target=connect, name="libvirt-open")
    thread.daemon = True
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ModuleError("uri: libvirt at %s did not answer within %d s (is its daemon hung?)" % (uri, timeout),
                          parameter="uri")
    if "error" in box:
        raise ModuleError("uri: cannot connect to %s: %s" % (uri, box["error"]), parameter="uri")
    conn = box["conn"]
    try:
        # probes every interval s; after KEEPALIVE_COUNT unanswered, closed (a
        # driver without a daemon, as the test driver, has no keepalive)
        conn.setKeepAlive(max(1, timeout // (KEEPALIVE_COUNT + 1)), KEEPALIVE_COUNT)
    except libvirt.libvirtError:
        pass
    return conn
