"""One lab host: an overlay root, its files, and systemd-nspawn booting it."""

import os
import secrets
import socket
import stat

from . import cgroups
from .errors import LabError
from .system import children, comm, run, wait_for
from .topology import DEVICES, IPV4_PREFIX

NSENTER = ["nsenter", "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"]


def mount_overlay(rootfs, hostdir):
    upper, work, root = (os.path.join(hostdir, d) for d in ("upper", "work", "root"))
    for path in (upper, work, root):
        os.makedirs(path, exist_ok=True)
    run(["mount", "-t", "overlay", "overlay", "-o",
         "lowerdir=%s,upperdir=%s,workdir=%s" % (rootfs, upper, work), root])
    return root


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, mode)


def hosts_file(topo, relay_names):
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback",
             "ff02::1 ip6-allnodes", "ff02::2 ip6-allrouters",
             "%s controller %s" % (topo.controller_address, " ".join(relay_names))]
    lines += ["%s %s" % (h.address, h.name) for h in topo.hosts]
    return "\n".join(lines) + "\n"


def prepare(root, topo, host, controller_pubkey, relay_names):
    """Write what makes this host itself: name, identity, keys, name resolution."""
    _write(os.path.join(root, "etc/hostname"), host.name + "\n")
    _write(os.path.join(root, "etc/machine-id"), secrets.token_hex(16) + "\n", 0o444)
    _write(os.path.join(root, "etc/hosts"), hosts_file(topo, relay_names))
    _write(os.path.join(root, "etc/resolv.conf"), "# lab host: names are in /etc/hosts\noptions timeout:1 attempts:1\n")
    _write(os.path.join(root, "etc/ssh/sshd_config.d/lab.conf"),
           "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n")
    # the underlay as systemd-networkd would manage it on a real host; inert
    # until a role starts networkd (the network role does, to persist VXLANs)
    _write(os.path.join(root, "etc/systemd/network/10-lab-underlay.network"),
           "[Match]\nName=eth0\n\n[Network]\nAddress=%s/%d\nAddress=%s/%d\nIPv6AcceptRA=no\nKeepConfiguration=yes\n"
           % (host.address, topo.prefix.prefixlen, host.ipv4_address, IPV4_PREFIX.prefixlen))
    key = os.path.join(root, "etc/ssh/ssh_host_ed25519_key")
    if not os.path.exists(key):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@" + host.name, "-f", key])
    os.makedirs(os.path.join(root, "root/.ssh"), mode=0o700, exist_ok=True)
    _write(os.path.join(root, "root/.ssh/authorized_keys"), controller_pubkey, 0o600)
    with open(key + ".pub", encoding="ascii") as pub:
        return pub.read().split()[:2]


def start(root, topo, host, log_path):
    """Boot the host; return (its reaper process, the nspawn PID)."""
    args = ["systemd-nspawn", "--boot", "--directory=" + root, "--machine=" + host.name,
            "--register=no", "--keep-unit", "--capability=all", "--console=pipe",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "--network-namespace-path=/run/netns/" + host.netns]
    args += ["--bind=" + bind for bind in device_binds(root, host)]
    # writable /proc/sys/net: roles set sysctls of the host's network stack
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    return cgroups.spawn(host.cgroup, args, log_path, env=env)


def device_binds(root, host):
    """The --bind arguments of the host's devices. /dev/kvm gets a node of
    its own next to the host's root, mode 0666 as systemd's udev rules make
    it: the machine's node may be root's alone, and while QEMU's user cannot
    open /dev/kvm, libvirt probes QEMU's capabilities again on every domain
    definition (seconds each), even for TCG domains. (The host's kvm group
    appears only when its packages are installed, after boot.)"""
    binds = []
    for path in host.device_paths:
        if path != DEVICES["kvm"]:
            binds.append(path)
            continue
        node = os.path.join(os.path.dirname(root), "dev-kvm")
        if os.path.lexists(node):
            os.unlink(node)
        os.mknod(node, 0o666 | stat.S_IFCHR, os.stat(path).st_rdev)
        os.chmod(node, 0o666)
        binds.append("%s:%s" % (node, path))
    return binds


def leader(reaper, nspawn_pid, timeout=30):
    """PID (on the machine) of the host's systemd."""
    def find():
        if reaper.poll() is not None:
            raise LabError("systemd-nspawn exited with %s before the host booted" % reaper.returncode)
        kids = [p for p in children(nspawn_pid) if comm(p) == "systemd"]
        return kids[0] if kids else None
    return wait_for("the host's systemd to start", find, timeout)


def nsenter(pid, args, **kwargs):
    return run(NSENTER + ["--target", str(pid)] + list(args), **kwargs)


def wait_booted(pid, name, timeout=90):
    # systemctl needs the manager's private socket, which appears early in boot
    wait_for("host %s's systemd to listen" % name,
             lambda: os.path.exists("/proc/%d/root/run/systemd/private" % pid), timeout)
    proc = nsenter(pid, ["systemctl", "is-system-running", "--wait"], check=False, timeout=timeout)
    state = proc.stdout.strip()
    if state != "running":
        failed = nsenter(pid, ["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout
        raise LabError("host %s: systemd is %r, not running (%s); failed units:\n%s"
                       % (name, state, proc.stderr.strip(), failed.strip()))


def wait_ssh(address, timeout=30):
    def connect():
        try:
            with socket.create_connection((str(address), 22), timeout=1) as sock:
                return sock.recv(4).startswith(b"SSH")
        except OSError:
            return False
    wait_for("SSH on [%s]:22" % address, connect, timeout, interval=0.2)
