"""One cgroup per lab host in every hierarchy, below the caller's own cgroups.

Without a service manager on the machine, systemd-nspawn --keep-unit stays in
the cgroups of whoever started it; every host needs its own, or all hosts would
share one payload cgroup. The groups are made below the cgroup this process is
in (so limits that apply to the caller still apply to the lab).
"""

import errno
import os
import subprocess
import sys
import time

from .errors import LabError
from .system import children, wait_for

TOP = "hardway-lab"


GENERIC_OPTIONS = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children",
                   "nsdelegate", "memory_recursiveprot", "xattr"}


def hierarchies():
    """Mount point of each cgroup hierarchy -> this process's path in it."""
    mounts = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            sep = fields.index("-")
            fstype, point = fields[sep + 1], fields[4]
            if fstype == "cgroup2":
                mounts.setdefault(frozenset(), point)
            elif fstype == "cgroup":
                controllers = frozenset(fields[sep + 3].split(",")) - GENERIC_OPTIONS
                mounts.setdefault(controllers, point)
    result = {}
    with open("/proc/self/cgroup", encoding="utf-8") as own:
        for line in own:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            point = mounts.get(frozenset(filter(None, controllers.split(","))))
            if point:
                result[point] = path
    return result


def _parent_dirs():
    return [os.path.normpath(point + path) for point, path in hierarchies().items()]


def _inherit_cpuset(path):
    """A new cpuset cgroup is empty and accepts no task until cpus/mems are set."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = os.path.join(path, name)
        if os.path.exists(own):
            with open(own, encoding="ascii") as cur:
                if cur.read().strip():
                    continue
            with open(os.path.join(os.path.dirname(path), name), encoding="ascii") as parent:
                value = parent.read().strip()
            with open(own, "w", encoding="ascii") as out:
                out.write(value)


def create(name):
    """Make <parent>/hardway-lab/<name> in every hierarchy; return the paths."""
    paths = []
    for parent in _parent_dirs():
        for path in (os.path.join(parent, TOP), os.path.join(parent, TOP, name)):
            try:
                os.makedirs(path, exist_ok=True)
                _inherit_cpuset(path)
            except OSError as exc:
                raise LabError("cannot create cgroup %s: %s" % (path, exc)) from exc
        paths.append(os.path.join(parent, TOP, name))
    return paths


def join(paths):
    """Move the calling process into the given cgroups (used in a pre-exec hook)."""
    for path in paths:
        with open(os.path.join(path, "cgroup.procs"), "w", encoding="ascii") as procs:
            procs.write(str(os.getpid()))


def spawn(name, args, log_path, env=None):
    """Start a detached process in cgroups of its own, output to log_path.

    It runs below a subreaper (reaper.py) that stays in the caller's cgroups and
    reaps whatever is orphaned below it; returns (reaper process, command PID).
    """
    paths = create(name)
    reaper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, reaper] + paths + ["--"] + list(args), env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def started():
        if proc.poll() is not None:
            raise LabError("%s exited with %s at once" % (args[0], proc.returncode))
        kids = children(proc.pid)
        return kids[0] if kids else None
    return proc, wait_for("%s to start" % args[0], started, 10, interval=0.01)


def lab_dirs(prefix):
    """Existing cgroups whose name starts with prefix, in every hierarchy."""
    found = []
    for parent in _parent_dirs():
        top = os.path.join(parent, TOP)
        if os.path.isdir(top):
            found.extend(os.path.join(top, d) for d in sorted(os.listdir(top)) if d.startswith(prefix))
    return found


def pids(paths):
    """Every process in the given cgroups and their descendants."""
    found = set()
    for path in paths:
        for dirpath, _dirs, files in os.walk(path):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(dirpath, "cgroup.procs"), encoding="ascii") as procs:
                        found.update(int(p) for p in procs.read().split())
                except OSError:
                    pass
    return sorted(found)


def _rmdir(path, timeout=10):
    """rmdir a cgroup; EBUSY lasts a moment after its last task died (the kernel
    lets go of a cgroup only once the task is released, and an orphan's
    release waits for the machine's init to reap it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise LabError("cannot remove cgroup %s: %s (tasks: %s; subgroups: %s)"
                               % (path, exc, _describe_tasks(path), _subgroups(path))) from exc
            time.sleep(0.1)


def _describe_tasks(path):
    try:
        with open(os.path.join(path, "tasks"), encoding="ascii") as tasks:
            pids = tasks.read().split()
    except OSError:
        return "?"
    found = []
    for pid in pids:
        try:
            with open("/proc/%s/stat" % pid, encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            found.append("%s state %s parent %s" % (pid, fields[0], fields[1]))
        except (OSError, IndexError):
            found.append(pid + " (gone)")
    return ", ".join(found) or "none"


def _subgroups(path):
    try:
        return [d.name for d in os.scandir(path) if d.is_dir()] or "none"
    except OSError:
        return "?"


def remove(paths):
    """rmdir the cgroups, deepest first; the caller made sure they are empty.

    The common parent goes too once no other lab uses it.
    """
    for path in paths:
        for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
            _rmdir(dirpath)
    for parent in {os.path.dirname(p) for p in paths}:
        if os.path.basename(parent) == TOP:
            try:
                os.rmdir(parent)
            except OSError:
                pass  # another lab still has hosts there
