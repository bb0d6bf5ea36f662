"""The shared Debian root filesystem every lab host boots from (built once, cached).

The cache key is a hash of everything that goes into the tree (suite, mirror,
package list, the customisation below); a change to any of them builds a new
tree next to the old ones. Hosts never write to it: each gets an overlay.
The same build-once helpers (digest, cached, mmdebstrap) make the guest images
of images.py.
"""

import fcntl
import hashlib
import json
import os
import shutil
import time

from .errors import LabError
from .system import run

SUITE = "bookworm"
MIRROR = "http://deb.debian.org"
PACKAGES_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rootfs-packages.txt")

# Units that do harm in a lab host: timers that would take the dpkg lock in the
# middle of a role run, and services that need hardware the hosts lack.
MASKED_UNITS = [
    "apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service", "apt-daily-upgrade.service",
    "e2scrub_all.timer", "fstrim.timer", "nvmf-autoconnect.service", "systemd-networkd-wait-online.service",
]

# libvirt and systemd inside a host need to write to the cgroup controllers,
# which systemd-nspawn mounts read-only; this unit makes them writable at boot.
CGROUP_RW_UNIT = """[Unit]
Description=Make the cgroup hierarchies writable (hardway lab host)
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for d in /sys/fs/cgroup /sys/fs/cgroup/*; do mountpoint -q "$d" && mount -o remount,bind,rw "$d"; done; true'

[Install]
WantedBy=sysinit.target
"""


def packages():
    with open(PACKAGES_FILE, encoding="utf-8") as listing:
        names = [line.split("#", 1)[0].strip() for line in listing]
    return sorted(n for n in names if n)


def sources():
    return [
        "deb %s/debian %s main" % (MIRROR, SUITE),
        "deb %s/debian %s-updates main" % (MIRROR, SUITE),
        "deb %s/debian-security %s-security main" % (MIRROR, SUITE),
    ]


def customize_commands():
    """Shell commands run on the finished tree ("$1" is its root)."""
    masks = " ".join(MASKED_UNITS)
    return [
        'rm -f "$1"/etc/ssh/ssh_host_*',
        'printf "" > "$1"/etc/machine-id',
        'rm -f "$1"/var/lib/dbus/machine-id',
        'printf "localhost\\n" > "$1"/etc/hostname',
        'for u in %s; do ln -sf /dev/null "$1"/etc/systemd/system/$u; done' % masks,
        "printf '%%s' '%s' > \"$1\"/etc/systemd/system/lab-cgroup-rw.service" % CGROUP_RW_UNIT.replace("'", "'\\''"),
        'mkdir -p "$1"/etc/systemd/system/sysinit.target.wants',
        'ln -sf ../lab-cgroup-rw.service "$1"/etc/systemd/system/sysinit.target.wants/lab-cgroup-rw.service',
        'rm -f "$1"/var/lib/apt/periodic/update-success-stamp',
    ]


def digest(material):
    """A short cache key for anything that can be written as JSON."""
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def cache_key():
    return digest({"layout": 2, "suite": SUITE, "sources": sources(), "packages": packages(),
                   "customize": customize_commands()})


def cached(base, name, key, build, log=print):
    """Return base/name, first building it with build(tmp) if it is not complete.

    Whatever is built goes to a temporary path next to the target and is
    renamed into place with a .complete marker, all under a lock: concurrent
    callers wait for one build, a killed build leaves nothing that looks done.
    """
    os.makedirs(base, exist_ok=True)
    target = os.path.join(base, name)
    if os.path.isfile(os.path.join(target, ".complete")):
        return target
    with open(os.path.join(base, ".lock"), "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(target, ".complete")):
            return target
        tmp = target + ".building"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        try:
            build(tmp)
            with open(os.path.join(tmp, ".complete"), "w", encoding="ascii") as done:
                done.write("%s\n" % key)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.rename(tmp, target)
        log("built %s/%s in %.0f s" % (os.path.basename(base), name, time.monotonic() - started))
    return target


def mmdebstrap(target, include, hooks, timeout=1800):
    """A minbase Debian tree at target with the packages of include, hooks run on it."""
    args = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(include),
            "--aptopt=Acquire::Retries \"3\""]
    args += ["--customize-hook=" + cmd for cmd in hooks]
    args += [SUITE, target] + sources()
    proc = run(args, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise LabError("mmdebstrap failed (rc=%d):\n%s" % (proc.returncode, proc.stderr[-4000:]))


def ensure(cache_dir, log=print):
    """Return the path of a ready rootfs, building it first if it is not cached."""
    key = cache_key()
    name = "%s-%s" % (SUITE, key)

    def build(tmp):
        log("building lab rootfs %s (%d packages)" % (name, len(packages())))
        mmdebstrap(tmp, packages(), customize_commands())
        # mmdebstrap empties the apt lists after the hooks; with a fresh mtime on
        # the empty lists, apt's cache_valid_time would skip the update and every
        # install would fail: make them look as old as they are useless
        os.utime(os.path.join(tmp, "var/lib/apt/lists"), (0, 0))
    return cached(os.path.join(cache_dir, "rootfs"), name, key, build, log)
