#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: haproxy_frontend
short_description: One HAProxy frontend and its backend, with runtime server states
version_added: 0.1.0
description:
  - Manages one C(frontend NAME) and its C(backend NAME) as a file of their own, C(50-NAME.cfg), in HAProxy's
    configuration directory. Other frontends, the global section and the defaults are not touched.
  - The whole configuration (the main files in I(config) and every C(*.cfg) of I(config_dir), with the new file in
    its place) is checked with C(haproxy -c) before the new file is renamed into place (atomic). A rejected change
    fails with HAProxy's message and the live configuration is untouched.
  - Before anything is written, each bind address is checked to be one the host can listen on (the kernel's own
    answer to a bind that shares the port the way HAProxy does) - not another host's address, unless the bind has the
    C(transparent) or C(freebind) option, and not a port another program holds. HAProxy 2.6 pauses its listeners
    while a new worker tries to bind, so a reload that fails there would refuse connections for seconds.
  - HAProxy must run in master-worker mode with a master CLI socket (Debian's service does, with
    C(-S /run/haproxy-master.sock)). A changed file is applied by a C(reload) through that socket, which starts a
    new worker and lets the old one finish its connections; with C(expose-fd listeners) on the stats socket
    (the M(hardway.cloud.haproxy_frontend)'s role C(hardway.cloud.edge) sets it) not a single connection is
    refused. If HAProxy fails to load the new configuration, the previous file is put back, HAProxy is reloaded
    with it (the old worker kept serving all along), and the task fails with HAProxy's messages from the journal.
  - When HAProxy's global section names a C(server-state-file), the servers' runtime states are saved there right
    before a reload, so drained or disabled servers of every backend keep their state across it.
  - Server states C(ready), C(drain) and C(maint) are runtime states, set through the master CLI on the current
    worker without a reload.
  - When HAProxy is not running, the file is written (after the check) and takes effect when HAProxy starts; the
    task warns.
author: hardway.cloud developers (!UNKNOWN)
extends_documentation_fragment:
  - hardway.cloud.attributes
options:
  name:
    description: The name of the frontend and of its backend (letters, digits, C(-), C(_), C(.), C(:)).
    type: str
    required: true
  state:
    description: Whether the frontend and its backend exist.
    type: str
    choices: [present, absent]
    default: present
  bind:
    description:
      - Where the frontend listens. A string is an address, C(192.0.2.10:80), C([2001:db8::10]:443) (IPv6 in
        brackets), C(*:80) or C(0.0.0.0:80) (every IPv4 address), C([::]:80) (every IPv6 address, and every
        IPv4 address too unless an IPv4 wildcard on the same port is listed). A specific IPv6 address is bound
        C(v6only), which lets HAProxy 2.6 hand the socket over to the new worker on a reload.
      - Required when I(state=present).
    type: list
    elements: raw
    default: []
    suboptions:
      address:
        description: C(ADDRESS:PORT) as above.
        type: str
        required: true
      certificate:
        description: Terminate TLS with this PEM file (certificate and key), an absolute path on the host.
        type: path
      options:
        description: Further words of the C(bind) line, e.g. C(alpn h2,http/1.1) or C(transparent).
        type: list
        elements: str
  mode:
    description: C(http) (layer 7, default) or C(tcp) (layer 4) for both the frontend and the backend.
    type: str
    choices: [http, tcp]
    default: http
  servers:
    description: The backend's servers.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The server's name, unique in this backend.
        type: str
        required: true
      address:
        description: IPv4 or IPv6 address (written in brackets for HAProxy), or a host name resolved at start.
        type: str
        required: true
      port:
        description: The server's port.
        type: int
        required: true
      check:
        description: Health-check the server.
        type: bool
        default: true
      weight:
        description: Load-balancing weight, 0 .. 256.
        type: int
        default: 1
      backup:
        description: Only used when no other server is up.
        type: bool
        default: false
      state:
        description:
          - Runtime state, set without a reload. C(drain) lets existing connections finish and sends no new ones;
            C(maint) takes the server out at once.
        type: str
        choices: [ready, drain, maint]
        default: ready
  balance:
    description: The backend's load-balancing algorithm.
    type: str
    choices: [roundrobin, static-rr, leastconn, first, source, uri, random]
    default: roundrobin
  health_check:
    description: How servers with I(check) are checked. Without I(http_path) the check is a TCP connect.
    type: dict
    suboptions:
      interval:
        description: Milliseconds between checks.
        type: int
        default: 2000
      rise:
        description: Successful checks before a server is up.
        type: int
        default: 2
      fall:
        description: Failed checks before a server is down.
        type: int
        default: 3
      http_path:
        description: Check with an HTTP request for this path (I(mode=http) only).
        type: str
      http_method:
        description: The HTTP check's method.
        type: str
        choices: [GET, HEAD, OPTIONS, POST]
        default: GET
      expect_status:
        description: The HTTP status a healthy server answers (default 200).
        type: int
  frontend_options:
    description:
      - Escape hatch, further lines of the frontend section, e.g. C(option forwardfor) or
        C(http-request set-header X-Forwarded-Proto https). Each is one line; section keywords are refused.
    type: list
    elements: str
    default: []
  backend_options:
    description: Escape hatch, further lines of the backend section, e.g. C(timeout server 1m).
    type: list
    elements: str
    default: []
  config_dir:
    description: HAProxy's configuration directory (loaded with C(-f DIR), files in lexical order).
    type: path
    default: /etc/haproxy/conf.d
  config:
    description: The main configuration files (global and defaults sections), loaded before I(config_dir).
    type: list
    elements: path
    default: [/etc/haproxy/haproxy.cfg]
  master_socket:
    description: HAProxy's master CLI socket (C(-S) option of HAProxy).
    type: path
    default: /run/haproxy-master.sock
  service:
    description: The systemd unit of HAProxy, whose journal is quoted when a reload fails.
    type: str
    default: haproxy
  reload:
    description: Reload HAProxy when the file changed. With C(false) the change waits for the next reload.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for HAProxy's master to answer and for a reload to finish.
    type: float
    default: 30
seealso:
  - module: hardway.cloud.radvd_prefix
notes:
  - HAProxy 2.6 or later (Debian 12). The master CLI gives no message of its own when a reload fails; the module
    detects it from C(show proc) (the master's failed-reload count) and quotes the service's journal.
"""

EXAMPLES = r"""
- name: Publish a tenant's web servers on the edge, over IPv4 and IPv6
  hardway.cloud.haproxy_frontend:
    name: web
    bind: ["*:80", "[::]:80"]
    servers:
      - {name: web1, address: "2001:db8:100::5054:ff:fe12:3456", port: 80}
      - {name: web2, address: "2001:db8:100::5054:ff:fe65:4321", port: 80}
    health_check:
      http_path: /healthz

- name: TLS termination and a backup server
  hardway.cloud.haproxy_frontend:
    name: shop
    bind:
      - address: "[2001:db8::10]:443"
        certificate: /etc/haproxy/certs/shop.pem
        options: ["alpn h2,http/1.1"]
    frontend_options: [option forwardfor]
    servers:
      - {name: a, address: "2001:db8:100::a", port: 8080}
      - {name: standby, address: "2001:db8:100::b", port: 8080, backup: true}

- name: Drain a server before maintenance (no reload)
  hardway.cloud.haproxy_frontend:
    name: web
    bind: ["*:80", "[::]:80"]
    servers:
      - {name: web1, address: "2001:db8:100::5054:ff:fe12:3456", port: 80, state: drain}
      - {name: web2, address: "2001:db8:100::5054:ff:fe65:4321", port: 80}

- name: Remove a frontend
  hardway.cloud.haproxy_frontend:
    name: shop
    state: absent
"""

RETURN = r"""
file:
  description: The frontend's configuration file.
  returned: always
  type: str
  sample: /etc/haproxy/conf.d/50-web.cfg
content:
  description: The file's content after the run (empty when absent).
  returned: always
  type: str
  sample: "frontend web\n    mode http\n    bind *:80\n ..."
reloaded:
  description: Whether HAProxy was reloaded.
  returned: always
  type: bool
  sample: true
server_states:
  description: The runtime state of each server after the run (empty when HAProxy is not running).
  returned: always
  type: dict
  sample: {web1: drain, web2: ready}
"""

import errno
import glob
import os
import re
import socket
import time

from ansible_collections.hardway.cloud.plugins.module_utils import haproxy as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import HardwayModule, ModuleError, ParameterError
from ansible_collections.hardway.cloud.plugins.module_utils.config_file import ConfigFile

FREE_BIND_OPTIONS = ("transparent", "freebind")


class NotRunning(Exception):
    """HAProxy's master socket does not answer: HAProxy is not running."""


class Master(object):
    """HAProxy's master CLI: one command per connection."""

    def __init__(self, path, timeout):
        self.path = path
        self.timeout = timeout

    def command(self, line):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise NotRunning(str(exc))
            sock.sendall((line + "\n").encode("utf-8"))
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout:
            raise ModuleError("HAProxy's master socket %s did not answer %r within %s s" % (self.path, line, self.timeout))
        except OSError as exc:
            # refused or reset: no master, or one that is re-executing itself for a reload
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET, errno.EPIPE):
                raise NotRunning(str(exc))
            raise ModuleError("HAProxy's master socket %s: %s" % (self.path, exc))
        finally:
            sock.close()
        return b"".join(chunks).decode("utf-8", "replace")

    def processes(self):
        return logic.parse_show_proc(self.command("show proc"))

    def worker(self, line):
        """A command for the current worker ("@1" is the newest)."""
        return self.command("@1 " + line)

    def set_server_state(self, backend, server, state):
        answer = self.worker("set server %s/%s state %s" % (backend, server, state)).strip()
        if answer:
            raise ModuleError("HAProxy refused the state %s for %s/%s: %s" % (state, backend, server, answer))

    def reload(self, deadline):
        """Reload and wait for the master to report the outcome; returns True
        when the new configuration was loaded, False when the reload failed."""
        before = self.processes()["master"]
        self.command("reload")
        while time.monotonic() < deadline:
            try:
                master = self.processes()["master"]
            except NotRunning:
                # the master re-executes itself: its socket is away for a moment
                master = None
            if master is not None:
                if master["failed"] > before["failed"]:
                    return False
                if master["reloads"] > before["reloads"]:
                    return True
            time.sleep(0.02)
        raise ModuleError("HAProxy did not finish the reload within the timeout", parameter="timeout")


class HaproxyFrontend(HardwayModule):
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        bind=dict(type="list", elements="raw", default=[]),
        mode=dict(type="str", default="http", choices=["http", "tcp"]),
        servers=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            address=dict(type="str", required=True),
            port=dict(type="int", required=True),
            check=dict(type="bool", default=True),
            weight=dict(type="int", default=1),
            backup=dict(type="bool", default=False),
            state=dict(type="str", default="ready", choices=["ready", "drain", "maint"]),
        )),
        balance=dict(type="str", default="roundrobin", choices=list(logic.BALANCE)),
        health_check=dict(type="dict", options=dict(
            interval=dict(type="int", default=2000),
            rise=dict(type="int", default=2),
            fall=dict(type="int", default=3),
            http_path=dict(type="str"),
            http_method=dict(type="str", default="GET", choices=list(logic.HTTP_METHODS)),
            expect_status=dict(type="int"),
        )),
        frontend_options=dict(type="list", elements="str", default=[]),
        backend_options=dict(type="list", elements="str", default=[]),
        config_dir=dict(type="path", default="/etc/haproxy/conf.d"),
        config=dict(type="list", elements="path", default=["/etc/haproxy/haproxy.cfg"]),
        master_socket=dict(type="path", default="/run/haproxy-master.sock"),
        service=dict(type="str", default="haproxy"),
        reload=dict(type="bool", default=True),
        timeout=dict(type="float", default=30),
    )

    def run(self):
        params = self.params
        if params["timeout"] <= 0:
            raise ParameterError("timeout", "must be more than 0 seconds")
        present = params["state"] == "present"
        want = logic.wanted(params) if present else {"name": logic.check_name("name", params["name"])}
        name = want["name"]
        path = os.path.join(params["config_dir"], logic.file_name(name))
        haproxy = self.module.get_bin_path("haproxy")
        if haproxy is None:
            raise ModuleError("haproxy is not installed (Debian package haproxy)")
        for main in params["config"]:
            if not os.path.isfile(main):
                raise ParameterError("config", "%s does not exist" % main)
        config = ConfigFile(path, run_command=self.module.run_command, validate=self._validate_argv(haproxy, path))
        master = Master(params["master_socket"], min(params["timeout"], 10))
        deadline = time.monotonic() + params["timeout"]

        with config.locked():
            before = config.read()
            after = logic.render(want) if present else None
            self.result.update(file=path, content=after or "", reloaded=False, server_states={})
            self.result["changed"] = before != after
            if self.module._diff:
                self.result["diff"] = [{"before": before or "", "after": after or "",
                                        "before_header": path, "after_header": path}]
            if present and before != after:
                self._check_binds(want)
            running = self._running(master)
            states = self._server_states(master, name) if running else {}
            if self.result["changed"]:
                if self.check_mode:
                    if present:
                        config.check(after)
                    else:
                        self._check_without(haproxy, path)
                else:
                    if present:
                        config.write(after)
                    else:
                        self._check_without(haproxy, path)
                        config.remove()
                    if running and params["reload"]:
                        self._reload(master, config, deadline)
                        states = self._server_states(master, name)
                    elif not running:
                        self.module.warn("HAProxy is not running (no master socket %s): the configuration takes "
                                         "effect when it starts" % params["master_socket"])
            if present:
                self._apply_states(master, want, states, running)

    def _validate_argv(self, haproxy, path):
        """``haproxy -c`` over the whole configuration, the candidate in place of the file."""
        argv = [haproxy, "-c"]
        for main in self.params["config"]:
            argv += ["-f", main]
        files = sorted(set(glob.glob(os.path.join(self.params["config_dir"], "*.cfg"))) | {path})
        for name in files:
            argv += ["-f", "%s" if name == path else name]
        return argv

    def _check_without(self, haproxy, path):
        """Removing the file must leave a valid configuration (nothing else may use this backend)."""
        argv = self._validate_argv(haproxy, path)
        at = argv.index("%s")
        argv = argv[:at - 1] + argv[at + 1:]
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            raise ModuleError("HAProxy's configuration would be invalid without %s: %s"
                              % (path, "\n".join(p for p in (err.strip(), out.strip()) if p)), validator_rc=rc)

    def _check_binds(self, want):
        """Each new listening address must be one this host can bind: not another
        host's address, not a port another program holds. HAProxy 2.6 pauses its
        listeners while a new worker tries to bind, so a reload that fails there
        would refuse connections for seconds; the kernel answers the same question
        at once. The probe shares the port the way HAProxy does (SO_REUSEPORT)
        and never listens, so it takes no connection from a running frontend."""
        for index, bind in enumerate(want["binds"]):
            if any(o.split()[0] in FREE_BIND_OPTIONS for o in bind["options"]):
                continue
            address = {"*": "0.0.0.0", "[::]": "::"}.get(bind["address"], bind["address"].strip("[]"))
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            probe = socket.socket(family, socket.SOCK_STREAM)
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6 and address == "::":
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                probe.bind((address, bind["port"]))
            except OSError as exc:
                hint = ("not an address of this host; add the 'transparent' option if that is intended"
                        if exc.errno == errno.EADDRNOTAVAIL else
                        "another program listens there" if exc.errno == errno.EADDRINUSE else "")
                raise ParameterError("bind[%d]" % index, "HAProxy could not listen on %s:%d: %s%s"
                                     % (bind["address"], bind["port"], exc.strerror or exc,
                                        " (%s)" % hint if hint else ""))
            finally:
                probe.close()

    def _running(self, master):
        try:
            master.processes()
        except NotRunning:
            return False
        return True

    def _server_states(self, master, name):
        answer = master.worker("show servers state %s" % name)
        if "Can't find backend" in answer:
            return {}
        return logic.parse_servers_state(answer, name)

    def _save_server_states(self, master):
        """Write every backend's runtime server states where HAProxy reads them at start."""
        state_file = None
        for main in self.params["config"]:
            with open(main) as handle:
                for line in handle:
                    match = re.match(r"^\s*server-state-file\s+(\S+)", line)
                    if match:
                        state_file = match.group(1)
        if not state_file or not state_file.startswith("/"):
            return
        dump = master.worker("show servers state")
        tmp = state_file + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(dump)
        os.rename(tmp, state_file)

    def _reload(self, master, config, deadline):
        started = time.time()
        self._save_server_states(master)
        try:
            if master.reload(deadline):
                self.result["reloaded"] = True
                return
            problem = "HAProxy failed to load it"
        except (ModuleError, NotRunning) as exc:
            problem = "the reload did not finish: %s" % exc
        # HAProxy keeps the old worker when a reload fails; put the old file back
        # so the next reload (ours, or anyone's) loads what is serving now
        config.rollback()
        messages = self._journal(started)
        try:
            restored = master.reload(time.monotonic() + self.params["timeout"])
        except (ModuleError, NotRunning):
            restored = False
        self.result["changed"] = False
        outcome = ("the previous configuration was put back and HAProxy reloaded with it" if restored else
                   "the previous configuration was put back; the old worker keeps serving")
        raise ModuleError("new configuration %s: %s (%s); %s"
                          % (self.result["file"], problem, messages or "HAProxy's messages are in its log", outcome))

    def _journal(self, since):
        """HAProxy's alerts since ``since`` from the service's journal (its
        stderr, logged at priority info, so filtered by HAProxy's own tags)."""
        journalctl = self.module.get_bin_path("journalctl")
        if journalctl is None or not os.path.isdir("/run/systemd/system"):
            return ""
        lines = []
        # journald may take a moment to write what the failed worker printed
        for _attempt in range(10):
            rc, out, _err = self.module.run_command([journalctl, "-u", self.params["service"], "--no-pager",
                                                     "-o", "cat", "--since", "@%d" % int(since)])
            lines = [line.strip() for line in out.splitlines() if "[ALERT]" in line] if rc == 0 else []
            if lines:
                break
            time.sleep(0.2)
        return "; ".join(lines[-5:])

    def _apply_states(self, master, want, states, running):
        wanted = dict((s["name"], s["state"]) for s in want["servers"])
        if not running:
            if any(state != "ready" for state in wanted.values()):
                self.module.warn("HAProxy is not running: the servers' runtime states are set when it runs")
            return
        if self.check_mode and self.result["changed"]:
            # after the reload, servers new to HAProxy would start ready
            known = dict((n, states.get(n, "ready")) for n in wanted)
        else:
            # a server missing here is not loaded yet (reload=false): it has no state to set
            known = dict((n, states[n]) for n in wanted if n in states)
        changes = dict((n, wanted[n]) for n in known if known[n] != wanted[n])
        self.result["server_states"] = dict(known)
        if not changes:
            return
        self.result["changed"] = True
        if self.module._diff:
            header = "runtime server states of backend %s" % want["name"]
            self.result["diff"].append({
                "before": "".join("%s: %s\n" % (n, known[n]) for n in sorted(changes)),
                "after": "".join("%s: %s\n" % (n, changes[n]) for n in sorted(changes)),
                "before_header": header, "after_header": header})
        if self.check_mode:
            self.result["server_states"].update(changes)
            return
        for server in sorted(changes):
            master.set_server_state(want["name"], server, changes[server])
        actual = self._server_states(master, want["name"])
        self.result["server_states"] = dict((n, actual.get(n)) for n in known)
        wrong = sorted(n for n in changes if actual.get(n) != changes[n])
        if wrong:
            raise ModuleError("HAProxy did not take the runtime state of %s" % ", ".join(wrong))


def main():
    HaproxyFrontend.main()


if __name__ == "__main__":
    main()
