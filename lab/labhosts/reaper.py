"""Run one command below a child subreaper: python3 reaper.py CGROUP... -- COMMAND...

The command runs in the given cgroups; this process stays where it was started.
Every process orphaned below the command (a container's processes when its
init is killed, the command itself) is re-parented to this process and reaped
at once. A cgroup cannot be removed while a zombie of it waits to be reaped,
and the machine's init may reap orphans late or never. SIGTERM and SIGINT
are passed on to the command; the exit status is the command's.

Self-contained (standard library only): it is run by path, not imported.
"""

import ctypes
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def main():
    sep = sys.argv.index("--")
    paths, args = sys.argv[1:sep], sys.argv[sep + 1:]
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("reaper: prctl(PR_SET_CHILD_SUBREAPER): %s" % os.strerror(ctypes.get_errno()))
    child = os.fork()
    if child == 0:
        for path in paths:
            with open(os.path.join(path, "cgroup.procs"), "w", encoding="ascii") as procs:
                procs.write(str(os.getpid()))
        os.execvp(args[0], args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
    status = 1
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            status = os.waitstatus_to_exitcode(wstatus)
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
