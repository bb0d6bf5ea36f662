# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of one HAProxy frontend and its backend: validate the wanted
proxy, render it as its own configuration file, and read what HAProxy's master
and runtime APIs answer (``show proc``, ``show servers state``). No I/O here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError, check_bool, list_entry

HEADER = "# Managed by hardway.cloud.haproxy_frontend; changes made here are overwritten.\n"
# HAProxy's own rule for proxy and server names (letters, digits, '-', '_', '.', ':')
NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
HOSTNAME = re.compile(r"^(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
BALANCE = ("roundrobin", "static-rr", "leastconn", "first", "source", "uri", "random")
MODES = ("http", "tcp")
SERVER_STATES = ("ready", "drain", "maint")
HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST")
# what a line given through the escape hatch may not contain: it must stay one
# directive of this proxy (no new section, no second line, no comment tricks)
SECTION_KEYWORDS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist",
                    "program", "http-errors", "ring", "mailers", "cache")


def check_name(parameter, value):
    if not isinstance(value, str) or not NAME.match(value):
        raise ParameterError(parameter, "%r is not a HAProxy name (1-64 of letters, digits, '-', '_', '.', ':')"
                                        % (value,))
    return value


def _port(parameter, value):
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ParameterError(parameter, "%r is not a port number" % (value,))
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise ParameterError(parameter, "%r is not a port number (1..65535)" % (value,))
    return port


def _address(parameter, value, wildcard=False):
    """An IPv4/IPv6 address (or a host name for servers); returned as HAProxy
    writes it before ``:port`` (IPv6 in brackets)."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise ParameterError(parameter, "%r is not an address" % (value,))
    text = value
    if wildcard and text in ("*", "::", "[::]", "0.0.0.0"):
        return {"*": "*", "0.0.0.0": "0.0.0.0"}.get(text, "[::]")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if not wildcard and HOSTNAME.match(text) and not text.replace(".", "").isdigit():
            return text
        raise ParameterError(parameter, "%r is not an IPv4 or IPv6 address" % (value,))
    if address.is_multicast:
        raise ParameterError(parameter, "%s is a multicast address" % address)
    return "[%s]" % address if address.version == 6 else str(address)


def split_endpoint(parameter, value):
    """``addr:port``, ``[v6addr]:port``, ``*:port`` -> (address, port)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "*", _port(parameter, value)
    if not isinstance(value, str) or ":" not in value:
        raise ParameterError(parameter, "%r is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)" % (value,))
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise ParameterError(parameter, "%r is not [ADDRESS]:PORT" % (value,))
    else:
        host, _sep, port = value.rpartition(":")
        if ":" in host:
            raise ParameterError(parameter, "%r: write an IPv6 address in brackets, [ADDRESS]:PORT" % (value,))
    return host or "*", _port(parameter, port)


def _line(parameter, value):
    """One directive given through the escape hatch."""
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(parameter, "%r is not a configuration line" % (value,))
    if any(ch in value for ch in "\r\n\x00"):
        raise ParameterError(parameter, "%r must be a single line" % (value,))
    first = value.split()[0]
    if first in SECTION_KEYWORDS or first.startswith("#"):
        raise ParameterError(parameter, "%r would start a new section or a comment, not a line of this proxy"
                                        % (value,))
    return " ".join(value.split())


def _int(parameter, value, low, high):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ParameterError(parameter, "%r is not a number" % (value,))
    if isinstance(value, bool) or not low <= number <= high or str(number) != str(value).strip():
        raise ParameterError(parameter, "%r is out of range (%d..%d)" % (value, low, high))
    return number


def wanted(params):
    """The frontend and its backend as a normalised dict; raises ParameterError."""
    name = check_name("name", params["name"])
    mode = params.get("mode") or "http"
    if mode not in MODES:
        raise ParameterError("mode", "%r is not one of %s" % (mode, ", ".join(MODES)))
    binds = []
    for index, item in enumerate(params.get("bind") or []):
        where = "bind[%d]" % index
        item = list_entry(where, item, "address", "'[2001:db8::1]:443'", ("certificate", "options"), scalars=(str, int))
        host, port = split_endpoint(where, item["address"])
        bind = {"address": _address(where, host, wildcard=True), "port": port, "certificate": None,
                "options": []}
        if item.get("certificate") is not None:
            cert = item["certificate"]
            if not isinstance(cert, str) or not cert.startswith("/") or any(c.isspace() for c in cert):
                raise ParameterError(where + ".certificate", "%r is not an absolute path without spaces" % (cert,))
            bind["certificate"] = cert
        bind["options"] = [_line(where + ".options", o) for o in (item.get("options") or [])]
        binds.append(bind)
    if params.get("state", "present") == "present" and not binds:
        raise ParameterError("bind", "a frontend needs at least one address to listen on")
    seen = set()
    for index, bind in enumerate(binds):
        key = (bind["address"], bind["port"])
        if key in seen:
            raise ParameterError("bind[%d]" % index, "%s:%d is listed twice" % key)
        seen.add(key)

    servers = []
    for index, item in enumerate(params.get("servers") or []):
        where = "servers[%d]" % index
        if not isinstance(item, dict):
            raise ParameterError(where, "must be a dict with name, address and port")
        for key in ("name", "address", "port"):
            if item.get(key) is None:
                raise ParameterError(where + "." + key, "is required")
        server = {
            "name": check_name(where + ".name", item["name"]),
            "address": _address(where + ".address", item["address"]),
            "port": _port(where + ".port", item["port"]),
            "check": check_bool(where + ".check", item.get("check", True)),
            "weight": _int(where + ".weight", item.get("weight", 1), 0, 256),
            "backup": check_bool(where + ".backup", item.get("backup", False)),
            "state": item.get("state") or "ready",
        }
        if server["state"] not in SERVER_STATES:
            raise ParameterError(where + ".state", "%r is not one of %s" % (server["state"], ", ".join(SERVER_STATES)))
        servers.append(server)
    names = [s["name"] for s in servers]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise ParameterError("servers", "server names must be unique: %s" % ", ".join(duplicates))

    balance = params.get("balance") or "roundrobin"
    if balance not in BALANCE:
        raise ParameterError("balance", "%r is not one of %s" % (balance, ", ".join(BALANCE)))
    health = params.get("health_check") or {}
    if not isinstance(health, dict):
        raise ParameterError("health_check", "must be a dict")
    unknown = set(health) - {"interval", "rise", "fall", "http_path", "http_method", "expect_status"}
    if unknown:
        raise ParameterError("health_check", "unknown keys %s" % ", ".join(sorted(unknown)))

    def given(key, default):
        # Ansible fills unset suboptions with None
        return default if health.get(key) is None else health[key]

    check = {
        "interval": _int("health_check.interval", given("interval", 2000), 100, 3600000),
        "rise": _int("health_check.rise", given("rise", 2), 1, 100),
        "fall": _int("health_check.fall", given("fall", 3), 1, 100),
        "http_path": health.get("http_path"),
        "http_method": given("http_method", "GET"),
        "expect_status": None,
    }
    if health.get("http_path") is not None or health.get("expect_status") is not None:
        check["expect_status"] = _int("health_check.expect_status", given("expect_status", 200), 100, 599)
    if check["http_path"] is not None:
        path = check["http_path"]
        if not isinstance(path, str) or not path.startswith("/") or re.search(r"[\s\x00-\x1f\x7f\\#]", path):
            raise ParameterError("health_check.http_path", "%r is not an absolute URL path without spaces" % (path,))
        if mode != "http":
            raise ParameterError("health_check.http_path", "HTTP checks need mode http")
    if check["http_method"] not in HTTP_METHODS:
        raise ParameterError("health_check.http_method", "%r is not one of %s"
                             % (check["http_method"], ", ".join(HTTP_METHODS)))
    if check["expect_status"] is not None and check["http_path"] is None:
        raise ParameterError("health_check.expect_status", "needs http_path")
    return {
        "name": name, "mode": mode, "binds": binds, "servers": servers, "balance": balance, "health_check": check,
        "frontend_options": [_line("frontend_options", o) for o in params.get("frontend_options") or []],
        "backend_options": [_line("backend_options", o) for o in params.get("backend_options") or []],
    }


def _bind_line(bind, ipv4_wildcard_ports):
    words = ["bind", "%s:%d" % (bind["address"], bind["port"])]
    if bind["address"] == "[::]":
        # every IPv6 address, and IPv4 too unless an IPv4 wildcard on the port takes that
        words.append("v6only" if bind["port"] in ipv4_wildcard_ports else "v4v6")
    elif bind["address"].startswith("[") and not set(("v6only", "v4v6")) & set(" ".join(bind["options"]).split()):
        # HAProxy 2.6 binds a specific IPv6 address v6only but, unless the line
        # says so, does not recognise the socket as its own on reload: the new
        # worker binds a new one and connections queued on the old are reset
        words.append("v6only")
    if bind["certificate"]:
        words += ["ssl", "crt", bind["certificate"]]
    return " ".join(words + bind["options"])


def _server_line(server):
    words = ["server", server["name"], "%s:%d" % (server["address"], server["port"])]
    if server["check"]:
        words.append("check")
    words += ["weight", str(server["weight"])]
    if server["backup"]:
        words.append("backup")
    return " ".join(words)


def render(want):
    """The proxy's own configuration file: ``frontend NAME`` and ``backend NAME``.

    Runtime server states (drain, maint) are not written here: they are set
    through the runtime API, and a reload keeps them when HAProxy's
    ``server-state-file`` is used."""
    name, check = want["name"], want["health_check"]
    lines = [HEADER.rstrip("\n"), "frontend %s" % name, "    mode %s" % want["mode"]]
    ipv4_wildcard_ports = set(b["port"] for b in want["binds"] if b["address"] in ("*", "0.0.0.0"))
    lines += ["    " + _bind_line(b, ipv4_wildcard_ports) for b in want["binds"]]
    lines += ["    " + o for o in want["frontend_options"]]
    lines += ["    default_backend %s" % name, "", "backend %s" % name, "    mode %s" % want["mode"],
              "    balance %s" % want["balance"]]
    if check["http_path"]:
        lines.append("    option httpchk")
        lines.append("    http-check send meth %s uri %s" % (check["http_method"], check["http_path"]))
        lines.append("    http-check expect status %d" % check["expect_status"])
    lines.append("    default-server inter %dms rise %d fall %d" % (check["interval"], check["rise"], check["fall"]))
    lines += ["    " + o for o in want["backend_options"]]
    lines += ["    " + _server_line(s) for s in want["servers"]]
    return "\n".join(lines) + "\n"


def file_name(name):
    """The proxy's file in the configuration directory."""
    return "50-%s.cfg" % name


def parse_show_proc(text):
    """``show proc`` of the master CLI -> {"master": {pid, reloads, failed},
    "workers": [{pid, reloads}]}."""
    result = {"master": None, "workers": []}
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            section = "workers" if stripped.startswith("# workers") else (
                "programs" if stripped.startswith("# programs") else section)
            continue
        fields = stripped.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        if fields[1] == "master":
            failed = re.search(r"\[failed:\s*(\d+)\]", stripped)
            result["master"] = {"pid": int(fields[0]), "reloads": int(fields[2]),
                                "failed": int(failed.group(1)) if failed else 0}
        elif fields[1] == "worker" and section != "programs":
            result["workers"].append({"pid": int(fields[0]), "reloads": int(fields[2])})
    if result["master"] is None:
        raise ValueError("no master line in show proc output: %r" % text[:200])
    return result


# srv_admin_state bits (HAProxy's SRV_ADMF_*): maintenance forced (0x01),
# inherited from a tracked server (0x02), from the configuration (0x04), or
# after a failed name resolution (0x20); drain forced (0x08) or inherited (0x10)
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20
ADMIN_DRAIN = 0x08 | 0x10


def parse_servers_state(text, backend):
    """``show servers state BACKEND`` -> {server name: ready|drain|maint}."""
    states = {}
    columns = None
    for line in text.splitlines():
        if line.startswith("#"):
            columns = line.lstrip("# ").split()
            continue
        fields = line.split()
        # the first line is the format version, alone
        if columns is None or len(fields) < len(columns):
            continue
        row = dict(zip(columns, fields))
        if row.get("be_name") != backend:
            continue
        admin = int(row.get("srv_admin_state", "0"))
        states[row["srv_name"]] = "maint" if admin & ADMIN_MAINT else ("drain" if admin & ADMIN_DRAIN else "ready")
    return states
