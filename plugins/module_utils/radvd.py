# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of radvd's configuration: validate one interface's
advertisement, render it as an ``interface NAME { ... };`` stanza, and find or
replace that stanza in a whole configuration without touching the rest
(other interfaces, comments, layout). No I/O here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError, check_bool, list_entry
from ansible_collections.hardway.cloud.plugins.module_utils.vxlan import check_ifname

DOMAIN = re.compile(r"^(?=.{1,253}\.?\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?\Z")
PREFERENCES = ("low", "medium", "high")
INFINITY = "infinity"
LIFETIME_MAX = 4294967294  # 0xffffffff means infinity on the wire


def _lifetime(parameter, value):
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == INFINITY:
        return INFINITY
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ParameterError(parameter, "%r is neither a number of seconds nor 'infinity'" % (value,))
    if not 0 <= seconds <= LIFETIME_MAX:
        raise ParameterError(parameter, "%r is out of range (0..%d seconds, or 'infinity')" % (value, LIFETIME_MAX))
    return seconds


def _seconds(value):
    return float("inf") if value == INFINITY else value


def _network(parameter, value):
    try:
        network = ipaddress.IPv6Network(value)
    except ValueError as exc:
        raise ParameterError(parameter, "%r is not an IPv6 prefix: %s" % (value, exc))
    return network


def wanted(params):
    """The advertisement as a normalised dict; raises ParameterError."""
    interface = check_ifname("interface", params["interface"])
    prefixes = []
    for index, item in enumerate(params.get("prefixes") or []):
        where = "prefixes[%d]" % index
        item = list_entry(where, item, "prefix", "2001:db8:100::/64",
                          ("on_link", "autonomous", "valid_lifetime", "preferred_lifetime"))
        network = _network(where + ".prefix", item["prefix"])
        autonomous = check_bool(where + ".autonomous", item.get("autonomous", True))
        if autonomous and network.prefixlen != 64:
            raise ParameterError(where + ".prefix", "%s: SLAAC (autonomous) needs a /64 prefix" % network)
        valid = _lifetime(where + ".valid_lifetime", item.get("valid_lifetime", 86400))
        preferred = _lifetime(where + ".preferred_lifetime", item.get("preferred_lifetime", 14400))
        if _seconds(preferred) > _seconds(valid):
            raise ParameterError(where + ".preferred_lifetime", "%s is longer than valid_lifetime %s" % (preferred, valid))
        prefixes.append({"prefix": str(network), "on_link": check_bool(where + ".on_link", item.get("on_link", True)),
                         "autonomous": autonomous, "valid_lifetime": valid, "preferred_lifetime": preferred})
    if len(set(p["prefix"] for p in prefixes)) != len(prefixes):
        raise ParameterError("prefixes", "lists a prefix twice")

    rdnss = []
    for index, value in enumerate(params.get("rdnss") or []):
        where = "rdnss[%d]" % index
        try:
            address = ipaddress.IPv6Address(value)
        except ValueError:
            raise ParameterError(where, "%r is not an IPv6 address" % (value,))
        if address.is_multicast or address.is_unspecified:
            raise ParameterError(where, "%s is not a unicast address" % address)
        rdnss.append(str(address))
    dnssl = []
    for index, value in enumerate(params.get("dnssl") or []):
        if not isinstance(value, str) or not DOMAIN.match(value):
            raise ParameterError("dnssl[%d]" % index, "%r is not a domain name" % (value,))
        dnssl.append(value.rstrip(".").lower())

    routes = []
    for index, item in enumerate(params.get("routes") or []):
        where = "routes[%d]" % index
        item = list_entry(where, item, "route", "2001:db8:200::/48", ("preference", "lifetime"))
        preference = item.get("preference", "medium")
        if preference not in PREFERENCES:
            raise ParameterError(where + ".preference", "%r is not one of %s" % (preference, ", ".join(PREFERENCES)))
        routes.append({"route": str(_network(where + ".route", item["route"])), "preference": preference,
                       "lifetime": _lifetime(where + ".lifetime", item.get("lifetime"))})

    max_interval = _number("max_interval", params.get("max_interval"), 4, 1800)
    min_interval = _number("min_interval", params.get("min_interval"), 3, 1350)
    effective_max = max_interval if max_interval is not None else 600
    if min_interval is not None and min_interval > 0.75 * effective_max:
        raise ParameterError("min_interval", "%s is more than 0.75 x max_interval (%s)" % (min_interval, effective_max))
    default_lifetime = params.get("default_lifetime")
    if default_lifetime is not None and default_lifetime != 0 and not effective_max <= default_lifetime <= 9000:
        raise ParameterError("default_lifetime", "%r must be 0 (not a default router) or between max_interval (%s) "
                                                 "and 9000" % (default_lifetime, effective_max))
    mtu = params.get("mtu")
    if mtu is not None and mtu != 0 and not 1280 <= mtu <= 65535:
        raise ParameterError("mtu", "%r is not an IPv6 link MTU (1280..65535, or 0 to not advertise one)" % (mtu,))
    return {"interface": interface, "prefixes": prefixes, "rdnss": rdnss,
            "rdnss_lifetime": _lifetime("rdnss_lifetime", params.get("rdnss_lifetime")),
            "dnssl": dnssl, "dnssl_lifetime": _lifetime("dnssl_lifetime", params.get("dnssl_lifetime")),
            "routes": routes, "min_interval": min_interval, "max_interval": max_interval,
            "default_lifetime": default_lifetime, "mtu": mtu}


def _number(parameter, value, low, high):
    if value is None:
        return None
    if not low <= value <= high:
        raise ParameterError(parameter, "%r is out of range (%s..%s seconds)" % (value, low, high))
    return value


def _on(value):
    return "on" if value else "off"


def _fmt(value):
    return ("%g" % value) if isinstance(value, float) else str(value)


def render(want):
    """The interface's stanza, in radvd's syntax, ending with a newline."""
    lines = ["interface %s {" % want["interface"], "    AdvSendAdvert on;"]
    for key, name in (("min_interval", "MinRtrAdvInterval"), ("max_interval", "MaxRtrAdvInterval"),
                      ("default_lifetime", "AdvDefaultLifetime"), ("mtu", "AdvLinkMTU")):
        if want[key] is not None:
            lines.append("    %s %s;" % (name, _fmt(want[key])))
    for prefix in want["prefixes"]:
        lines += ["    prefix %s {" % prefix["prefix"],
                  "        AdvOnLink %s;" % _on(prefix["on_link"]),
                  "        AdvAutonomous %s;" % _on(prefix["autonomous"]),
                  "        AdvValidLifetime %s;" % prefix["valid_lifetime"],
                  "        AdvPreferredLifetime %s;" % prefix["preferred_lifetime"],
                  "    };"]
    for route in want["routes"]:
        lines += ["    route %s {" % route["route"], "        AdvRoutePreference %s;" % route["preference"]]
        if route["lifetime"] is not None:
            lines.append("        AdvRouteLifetime %s;" % route["lifetime"])
        lines.append("    };")
    if want["rdnss"]:
        lines.append("    RDNSS %s {" % " ".join(want["rdnss"]))
        if want["rdnss_lifetime"] is not None:
            lines.append("        AdvRDNSSLifetime %s;" % want["rdnss_lifetime"])
        lines.append("    };")
    if want["dnssl"]:
        lines.append("    DNSSL %s {" % " ".join(want["dnssl"]))
        if want["dnssl_lifetime"] is not None:
            lines.append("        AdvDNSSLLifetime %s;" % want["dnssl_lifetime"])
        lines.append("    };")
    lines.append("};")
    return "\n".join(lines) + "\n"


def _tokens(text):
    """(kind, value, start, end) for words, braces and semicolons; comments
    and quoted strings are handled so braces inside them do not count."""
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char.isspace():
            index += 1
        elif char == "#":
            newline = text.find("\n", index)
            index = length if newline < 0 else newline + 1
        elif char in "{};":
            yield char, char, index, index + 1
            index += 1
        elif char == '"':
            close = text.find('"', index + 1)
            end = length if close < 0 else close + 1
            yield "word", text[index + 1:end - 1], index, end
            index = end
        else:
            end = index
            while end < length and not text[end].isspace() and text[end] not in '{};#"':
                end += 1
            yield "word", text[index:end], index, end
            index = end


class ConfigSyntaxError(Exception):
    pass


def stanzas(text):
    """{interface name: (start, end)} of the top-level ``interface`` blocks;
    the span covers the block, its ';' and the rest of that line."""
    found, depth, block = {}, 0, None
    for kind, value, start, end in _tokens(text):
        if depth == 0 and block is None:
            if kind == "word" and value == "interface":
                block = {"start": start, "name": None}
            elif kind != ";":
                raise ConfigSyntaxError("unexpected %r at offset %d" % (value, start))
            continue
        if kind == "word" and block is not None and block["name"] is None and depth == 0:
            block["name"] = value
        elif kind == "{":
            depth += 1
        elif kind == "}":
            depth -= 1
            if depth < 0:
                raise ConfigSyntaxError("unbalanced '}' at offset %d" % start)
        elif kind == ";" and depth == 0 and block is not None:
            if block["name"] is None:
                raise ConfigSyntaxError("interface without a name at offset %d" % block["start"])
            line_end = text.find("\n", end)
            stop = len(text) if line_end < 0 else line_end + 1
            if text[end:stop].strip():
                stop = end
            begin = text.rfind("\n", 0, block["start"]) + 1
            if text[begin:block["start"]].strip():
                begin = block["start"]
            found[block["name"]] = (begin, stop)
            block = None
    if depth != 0 or block is not None:
        raise ConfigSyntaxError("unterminated interface block")
    return found


def current(text, interface):
    """The interface's stanza as it is in ``text``, or None."""
    span = stanzas(text or "").get(interface)
    return text[span[0]:span[1]] if span else None


def replace(text, interface, stanza):
    """``text`` with the interface's stanza replaced by ``stanza`` (appended
    when new; removed when ``stanza`` is None). Everything else stays."""
    text = text or ""
    span = stanzas(text).get(interface)
    if span is None:
        if stanza is None:
            return text
        if text and not text.endswith("\n"):
            text += "\n"
        return text + stanza
    begin, end = span
    return text[:begin] + (stanza or "") + text[end:]


def interfaces(text):
    return sorted(stanzas(text or ""))
