"""Run every benchmark and write docs/benchmarks.md.

Each figure is measured in this run next to its peer or its floor, so ratios
compare like with like on whatever machine runs it.
"""

import datetime
import functools
import os
import platform
import statistics
import subprocess
import tempfile
import time

from labhosts import ceph as ceph_lab
from labhosts import lab
from labhosts.topology import parse

from benchmarks.rbd import bench_clones

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPEAT = 3
TASKS = 30


def timed(func):
    started = time.monotonic()
    result = func()
    return time.monotonic() - started, result


def median_of(func, repeat=REPEAT):
    return statistics.median(timed(func)[0] for _run in range(repeat))


def quiet(_msg):
    return None


def bench_lab():
    """Bring-up and teardown of lab hosts; the floor is one host."""
    rows = []
    for count in (1, 3, 5):
        topo = parse({"lab": "bench", "hosts": ["h%d" % i for i in range(count)]})
        ups, downs = [], []
        for _run in range(REPEAT):
            ups.append(timed(lambda: lab.up(topo, fresh=True, log=quiet))[0])
            downs.append(timed(lambda: lab.down("bench", log=quiet))[0])
        rows.append((count, statistics.median(ups), statistics.median(downs)))
    return rows


def bench_connection():
    """A no-change playbook over SSH: project settings vs Ansible's defaults."""
    state = lab.up(parse({"lab": "bench", "hosts": ["h0", "h1", "h2"]}), fresh=True, log=quiet)
    tasks = "    - ansible.builtin.stat:\n        path: /etc/hostname\n" * TASKS
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            book = os.path.join(tmp, "noop.yml")
            with open(book, "w", encoding="utf-8") as out:
                out.write("- hosts: all\n  gather_facts: false\n  tasks:\n" + tasks)
            variants = {
                "project ansible.cfg (pipelining, ControlPersist)": {},
                "Ansible defaults (no pipelining)": {"ANSIBLE_PIPELINING": "False"},
            }
            argv = ["ansible-playbook", "-i", state["inventory"], book]
            for label, extra in variants.items():
                env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), **extra)
                play = functools.partial(subprocess.run, argv, env=env, check=True, capture_output=True)
                play()  # warm the SSH control masters for both variants alike
                results[label] = median_of(play)
    finally:
        lab.down("bench", log=quiet)
    return results


def bench_volumes(count=50):
    """ceph_rbd_volume against the rbd CLI: clones of one snapshot on a
    one-host cluster made by the storage role (medians of REPEAT runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _state, conf, keyring = ceph_lab.up("bench-ceph", tmp)
            runs = [bench_clones(conf, keyring, "admin", "vms", count) for _run in range(REPEAT)]
        finally:
            lab.down("bench-ceph", log=quiet)
    return count, {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def volume_lines(volumes):
    count, figures = volumes
    peer = {op: figures["rbd CLI loop: %s" % op] for op in ("create", "delete")}
    lines = [
        "",
        "## Volumes (Ceph RBD)",
        "",
        "%d copy-on-write clones of one protected snapshot, created and then deleted, on a one-host" % count,
        "cluster made by the `storage` role (lab host, two cores shared with everything else). The peer",
        "is an `rbd` CLI loop (one process per image, as a shell script does it); the floor is the",
        "librbd binding calls alone in one process. The Ansible rows include `ansible-playbook`'s start.",
        "",
        "| way | create (s) | vs rbd CLI | delete (s) | vs rbd CLI |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        "ansible one task, volumes": "`ceph_rbd_volume`, one task, `volumes` batch",
        "ansible loop": "`ceph_rbd_volume`, one task with `loop`",
        "rbd CLI loop": "`rbd` CLI loop (peer)",
        "bindings": "librbd bindings alone (floor)",
    }
    for key, label in labels.items():
        create, delete = figures[key + ": create"], figures[key + ": delete"]
        lines.append("| %s | %.2f | %.2fx | %.2f | %.2fx |"
                     % (label, create, peer["create"] / create, delete, peer["delete"] / delete))
    lines += ["", "Ratios above 1 are faster than the peer. A looped task pays Ansible's cost per item;",
              "the batch pays it once, which is how the tenant role calls the module."]
    return lines


def write(lab_rows, conn, volumes):
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` on %s (%s, %d cores). Medians of %d runs; every ratio compares"
        % (datetime.date.today().isoformat(), platform.platform(), os.cpu_count(), REPEAT),
        "figures measured in the same run.",
        "",
        "## Lab hosts (rootfs cached)",
        "",
        "Time until every host has systemd `running` and answers on SSH, and time to remove",
        "everything again. The floor is one host: the cost of more hosts is what the harness adds.",
        "",
        "| hosts | up (s) | up / floor | down (s) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    floor = lab_rows[0][1]
    for count, up, down in lab_rows:
        lines.append("| %d | %.2f | %.1fx | %.2f |" % (count, up, up / floor, down))
    base = conn["Ansible defaults (no pipelining)"]
    lines += [
        "",
        "## Connection settings",
        "",
        "A playbook of %d no-change tasks on 3 lab hosts over SSH (control masters warm)." % TASKS,
        "",
        "| settings | time (s) | vs Ansible defaults |",
        "| --- | ---: | ---: |",
    ]
    for label, seconds in conn.items():
        ratio = "baseline" if seconds == base else "%.2fx faster" % (base / seconds)
        lines.append("| %s | %.2f | %s |" % (label, seconds, ratio))
    lines += ["", "Recommended: the project's `ansible.cfg` (`pipelining = True`, ControlPersist)."]
    lines += volume_lines(volumes) + [""]
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines))
    print("\n".join(lines))
    print("written: %s" % path)


def main():
    write(bench_lab(), bench_connection(), bench_volumes())


if __name__ == "__main__":
    main()
