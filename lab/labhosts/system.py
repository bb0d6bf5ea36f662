"""Running commands and handling processes, the only place that shells out."""

import os
import signal
import subprocess
import time

from .errors import LabError


def run(args, check=True, timeout=300, input_text=None, env=None):
    """Run a command; on failure raise LabError with its stderr."""
    try:
        proc = subprocess.run(
            args, input=input_text, capture_output=True, text=True,
            timeout=timeout, check=False, env=env,
        )
    except FileNotFoundError as exc:
        raise LabError("%s: command not found (run 'make setup')" % args[0]) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError("%s: no answer within %ss" % (" ".join(args), timeout)) from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError("%s failed (rc=%d): %s" % (" ".join(args), proc.returncode, detail))
    return proc


def alive(pid):
    """True when the process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid, encoding="utf-8", errors="replace") as name:
            return name.read().strip()
    except OSError:
        return ""


def children(pid):
    found = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task), encoding="ascii") as kids:
                found.extend(int(p) for p in kids.read().split())
    except OSError:
        pass
    return found


def wait_gone(pids, timeout):
    """Wait until none of pids is alive; return those still alive."""
    deadline = time.monotonic() + timeout
    pids = [p for p in pids if alive(p)]
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        reap(pids)
        pids = [p for p in pids if alive(p)]
    return pids


def reap(pids):
    """Collect exit statuses of our own children among pids, ignore others."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def kill(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_for(what, predicate, timeout, interval=0.1):
    """Poll predicate until it returns a true value; LabError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise LabError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)
