"""hardway.cloud: libvirt qemu hook registering VM ports with port security.

libvirt runs /etc/libvirt/hooks/qemu.d/hardway-port-security DOMAIN OPERATION
SUBOP EXTRA with the domain's XML on stdin, which runs this with
/usr/bin/python3. On `started` (QEMU runs, its taps exist and the XML names
them, the CPUs have not run yet) and `reconnect` (libvirtd restarted), every
`<interface type='bridge'>` with a tap is allowed:
    /usr/libexec/hardway/port-security allow TAP MAC BRIDGE
and remembered under /run; on `stopped` and `release` the remembered ports are
revoked (by then the taps are gone and the XML no longer names them).

It never prints (libvirt would read its output as a changed domain XML) and
always exits 0: a failing hook fails the VM's start, or kills it on reconnect.
Without the helper (role hardway.cloud.network) it does nothing.
"""
import os
import re
import subprocess
import sys
import syslog
import xml.etree.ElementTree as ET

HELPER = "/usr/libexec/hardway/port-security"
STATE = "/run/hardway/port-security"
# the names and addresses the helper accepts
NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}\Z")
MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}\Z")
UUID = re.compile(r"[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}\Z")


def warn(message):
    syslog.syslog(syslog.LOG_WARNING, message)


def helper(*args):
    result = subprocess.run([HELPER] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=30, check=False)
    if result.returncode != 0:
        warn("port-security %s failed: %s" % (" ".join(args), result.stderr.strip()))


def attribute(nic, tag, name):
    element = nic.find(tag)
    return element.get(name, "") if element is not None else ""


def bridge_ports(domain, name):
    for nic in domain.findall("./devices/interface[@type='bridge']"):
        tap = attribute(nic, "target", "dev")
        if not tap:
            continue
        mac, bridge = attribute(nic, "mac", "address"), attribute(nic, "source", "bridge")
        if NAME.match(tap) and MAC.match(mac) and NAME.match(bridge):
            yield tap, mac.lower(), bridge
        else:
            warn("%s: port %r (MAC %r, bridge %r) not registered: bad name or MAC" % (name, tap, mac, bridge))


def main():
    name, operation = (sys.argv + ["-", "-"])[1:3]
    text = sys.stdin.read()
    if operation not in ("started", "reconnect", "stopped", "release") or not os.access(HELPER, os.X_OK):
        return
    domain = ET.fromstring(text)
    uuid = domain.findtext("uuid", "")
    if not UUID.match(uuid):
        warn("%s: no domain UUID in the hook's input" % name)
        return
    state = os.path.join(STATE, uuid.lower())
    if operation in ("started", "reconnect"):
        ports = list(bridge_ports(domain, name))
        for tap, mac, bridge in ports:
            helper("allow", tap, mac, bridge)
        os.makedirs(STATE, mode=0o700, exist_ok=True)
        with open(state + ".tmp", "w", encoding="ascii") as remembered:
            remembered.writelines("%s %s\n" % (tap, mac) for tap, mac, _bridge in ports)
        os.replace(state + ".tmp", state)
    elif os.path.exists(state):
        with open(state, encoding="ascii") as remembered:
            for line in remembered:
                tap, mac = line.split()
                # QEMU has exited, so its tap is gone: a port of that name is
                # another VM's now, whose registration must stay
                if not os.path.exists(os.path.join("/sys/class/net", tap)):
                    helper("revoke", tap, mac)
        os.unlink(state)


if __name__ == "__main__":
    syslog.openlog("hardway-port-security")
    try:
        main()
    except Exception as error:  # pylint: disable=broad-except
        warn("hook failed for %s: %r" % (" ".join(sys.argv[1:]), error))
    sys.exit(0)
