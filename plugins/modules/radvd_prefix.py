#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: radvd_prefix
short_description: One interface's router advertisement in radvd's configuration
version_added: 0.1.0
description:
  - Manages the C(interface NAME { ... };) stanza of one interface in radvd's configuration file (prefixes,
    RDNSS, DNSSL, routes, advertisement intervals and router lifetime). Other interfaces' stanzas, comments and
    layout are left exactly as they are.
  - The whole new file is validated with C(radvd --configtest) as a temporary file next to the live one and only
    then renamed into place (atomic). When validation fails the task fails with radvd's message and the live
    file is untouched.
  - radvd is reloaded only when the file changed, and started (and enabled) when the first stanza makes it
    needed; it is stopped when the last stanza is removed, since radvd refuses an empty configuration. If a
    reload leaves radvd dead, the previous file is put back and radvd restarted with it.
  - With I(state=present), a radvd I(service) that is not running (stopped, or crashed) is started and enabled
    even when the file is unchanged, since the prefixes are only advertised while radvd runs.
  - Concurrent runs on one host are serialised by a lock on the file.
author: hardway.cloud developers (!UNKNOWN)
extends_documentation_fragment:
  - hardway.cloud.attributes
options:
  interface:
    description: The interface to advertise on, usually a tenant network's bridge on the edge host.
    type: str
    required: true
  state:
    description: Whether the interface's stanza is present.
    type: str
    choices: [present, absent]
    default: present
  prefixes:
    description:
      - Prefixes to advertise. A string is a prefix with the defaults below.
      - Autonomous (SLAAC) prefixes must be /64.
    type: list
    elements: raw
    default: []
    suboptions:
      prefix:
        description: The IPv6 prefix, e.g. C(2001:db8:100::/64).
        type: str
        required: true
      on_link:
        description: C(AdvOnLink).
        type: bool
        default: true
      autonomous:
        description: C(AdvAutonomous), hosts build addresses from the prefix (SLAAC).
        type: bool
        default: true
      valid_lifetime:
        description: C(AdvValidLifetime), seconds or C(infinity).
        type: raw
        default: 86400
      preferred_lifetime:
        description: C(AdvPreferredLifetime), seconds or C(infinity); not longer than I(valid_lifetime).
        type: raw
        default: 14400
  rdnss:
    description: Recursive DNS servers (RFC 8106).
    type: list
    elements: str
    default: []
  rdnss_lifetime:
    description: C(AdvRDNSSLifetime), seconds or C(infinity); radvd's default when omitted.
    type: raw
  dnssl:
    description: DNS search list.
    type: list
    elements: str
    default: []
  dnssl_lifetime:
    description: C(AdvDNSSLLifetime), seconds or C(infinity); radvd's default when omitted.
    type: raw
  routes:
    description: More-specific routes (RFC 4191). A string is a route with medium preference.
    type: list
    elements: raw
    default: []
    suboptions:
      route:
        description: The IPv6 prefix of the route.
        type: str
        required: true
      preference:
        description: C(AdvRoutePreference).
        type: str
        choices: [low, medium, high]
        default: medium
      lifetime:
        description: C(AdvRouteLifetime), seconds or C(infinity).
        type: raw
  min_interval:
    description: C(MinRtrAdvInterval) in seconds (3 .. 0.75 x I(max_interval)); radvd's default when omitted.
    type: float
  max_interval:
    description: C(MaxRtrAdvInterval) in seconds (4 .. 1800); radvd's default (600) when omitted.
    type: float
  default_lifetime:
    description: C(AdvDefaultLifetime), 0 (not a default router) or I(max_interval) .. 9000 seconds.
    type: int
  mtu:
    description: C(AdvLinkMTU), the MTU hosts on the link should use (e.g. the VXLAN network's MTU).
    type: int
  config:
    description: radvd's configuration file.
    type: path
    default: /etc/radvd.conf
  service:
    description: The systemd unit of radvd, reloaded on change.
    type: str
    default: radvd
  pid_file:
    description:
      - Reload a radvd that runs outside a service manager (for example in a network namespace) by C(SIGHUP) to
        the process in this file, instead of using I(service). A radvd that is not running is not started.
    type: path
seealso:
  - module: hardway.cloud.vxlan_network
"""

EXAMPLES = r"""
- name: Advertise tenant network 100 on the edge host
  hardway.cloud.radvd_prefix:
    interface: br-vni100
    prefixes: ["2001:db8:100::/64"]
    rdnss: ["2001:db8::53"]
    dnssl: [example.org]
    min_interval: 3
    max_interval: 10
    mtu: 1430

- name: A prefix with explicit flags and lifetimes, and a route
  hardway.cloud.radvd_prefix:
    interface: br-vni200
    prefixes:
      - prefix: 2001:db8:200::/64
        valid_lifetime: infinity
        preferred_lifetime: infinity
    routes:
      - {route: "2001:db8:ff::/48", preference: high}

- name: Stop advertising on a network
  hardway.cloud.radvd_prefix:
    interface: br-vni200
    state: absent
"""

RETURN = r"""
stanza:
  description: The interface's stanza after the run (empty when absent).
  returned: always
  type: str
  sample: "interface br-vni100 {\n    AdvSendAdvert on;\n    prefix 2001:db8:100::/64 {\n ..."
config:
  description: The configuration file.
  returned: always
  type: str
  sample: /etc/radvd.conf
interfaces:
  description: All interfaces in the configuration after the run.
  returned: always
  type: list
  elements: str
  sample: [br-vni100, br-vni200]
service_action:
  description: What was done to radvd (C(reloaded), C(started), C(stopped)), or null.
  returned: always
  type: str
  sample: reloaded
"""

import os
import signal
import time

from ansible_collections.hardway.cloud.plugins.module_utils import radvd as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import HardwayModule, ModuleError
from ansible_collections.hardway.cloud.plugins.module_utils.config_file import ConfigFile

HEADER = "# radvd configuration; interface stanzas are managed by hardway.cloud.radvd_prefix\n"


class Radvd(object):
    """radvd under systemd (``service``) or a bare process (``pid_file``)."""

    def __init__(self, module, service, pid_file):
        self.module = module
        self.service = service
        self.pid_file = pid_file

    def _pid(self):
        try:
            with open(self.pid_file) as handle:
                pid = int(handle.read().strip())
            with open("/proc/%d/comm" % pid) as handle:
                return pid if handle.read().strip() == "radvd" else None
        except (OSError, ValueError):
            return None

    def supervised(self):
        """Whether systemd runs radvd here (a service that can be started)."""
        return self.module.get_bin_path("systemctl") is not None and os.path.isdir("/run/systemd/system")

    def _systemctl(self, *args):
        systemctl = self.module.get_bin_path("systemctl")
        if not self.supervised():
            raise ModuleError("radvd cannot be reloaded: this host does not run systemd; give pid_file for a radvd "
                              "that runs outside a service manager", parameter="service")
        return self.module.run_command([systemctl] + list(args))

    def running(self):
        if self.pid_file:
            return self._pid() is not None
        rc, _out, _err = self._systemctl("is-active", "--quiet", self.service)
        return rc == 0

    def apply(self, has_interfaces):
        """Bring radvd in line with a new file; returns what was done."""
        running = self.running()
        if not has_interfaces:
            if not running:
                return None
            self._signal_or_systemctl(signal.SIGTERM, "stop")
            return "stopped"
        if running:
            self._signal_or_systemctl(signal.SIGHUP, "reload")
            action = "reloaded"
        elif self.pid_file:
            self.module.warn("radvd is not running (pid file %s); the configuration takes effect when it starts"
                             % self.pid_file)
            return None
        else:
            self._checked("enable", "--now")
            action = "started"
        # a reload that kills radvd shows after a moment, not in systemctl's rc
        time.sleep(0.3)
        if not self.running():
            raise ModuleError("radvd is not running after it was %s" % action)
        return action

    def _signal_or_systemctl(self, sig, verb):
        if self.pid_file:
            pid = self._pid()
            if pid is not None:
                os.kill(pid, sig)
            return
        self._checked(verb)

    def _checked(self, *args):
        rc, out, err = self._systemctl(*(list(args) + [self.service]))
        if rc != 0:
            raise ModuleError("systemctl %s %s failed: %s" % (" ".join(args), self.service, (err or out).strip()))


class RadvdPrefix(HardwayModule):
    argument_spec = dict(
        interface=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        prefixes=dict(type="list", elements="raw", default=[]),
        rdnss=dict(type="list", elements="str", default=[]),
        rdnss_lifetime=dict(type="raw"),
        dnssl=dict(type="list", elements="str", default=[]),
        dnssl_lifetime=dict(type="raw"),
        routes=dict(type="list", elements="raw", default=[]),
        min_interval=dict(type="float"),
        max_interval=dict(type="float"),
        default_lifetime=dict(type="int"),
        mtu=dict(type="int"),
        config=dict(type="path", default="/etc/radvd.conf"),
        service=dict(type="str", default="radvd"),
        pid_file=dict(type="path"),
    )

    def run(self):
        params = self.params
        want = logic.wanted(params)
        interface = want["interface"]
        radvd = self.module.get_bin_path("radvd")
        if radvd is None and params["state"] == "present":
            raise ModuleError("radvd is not installed (Debian package radvd)", parameter="config")
        config = ConfigFile(params["config"], run_command=self.module.run_command,
                            validate=[radvd or "radvd", "--configtest", "--config", "%s"])
        with config.locked():
            text = config.read()
            try:
                before = logic.current(text, interface)
            except logic.ConfigSyntaxError as exc:
                raise ModuleError("cannot find the interface stanzas in %s: %s" % (params["config"], exc),
                                  parameter="config")
            after = logic.render(want) if params["state"] == "present" else None
            new_text = logic.replace(text if text is not None else HEADER, interface, after)
            self.result.update(config=params["config"], stanza=after or "", service_action=None,
                               interfaces=logic.interfaces(new_text if after != before else text))
            self.result["changed"] = before != after
            if self.module._diff:
                self.result["diff"] = {"before": before or "", "after": after or "",
                                       "before_header": "%s: interface %s" % (params["config"], interface),
                                       "after_header": "%s: interface %s" % (params["config"], interface)}
            if not self.result["changed"]:
                if after is not None and not params["pid_file"]:
                    self._ensure_running(Radvd(self.module, params["service"], None))
                return
            has_interfaces = bool(logic.interfaces(new_text))
            if self.check_mode:
                if has_interfaces:
                    config.check(new_text)
                return
            if has_interfaces:
                config.write(new_text)
            else:
                # radvd rejects a file without interfaces: nothing to validate
                config.validate = None
                config.write(new_text)
            service = Radvd(self.module, params["service"], params["pid_file"])
            try:
                self.result["service_action"] = service.apply(has_interfaces)
            except ModuleError as exc:
                config.rollback()
                try:
                    service.apply(bool(logic.interfaces(text)))
                    restored = "the previous configuration was put back and radvd runs with it"
                except ModuleError as again:
                    restored = "the previous configuration was put back, but radvd still fails: %s" % again
                raise ModuleError("%s; %s" % (exc, restored))

    def _ensure_running(self, service):
        """The file is as it should be; radvd advertises it only while it runs."""
        if not service.supervised() or service.running():
            return
        self.result["changed"] = True
        if not self.check_mode:
            self.result["service_action"] = service.apply(True)


def main():
    RadvdPrefix.main()


if __name__ == "__main__":
    main()
