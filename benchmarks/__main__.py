"""Run every benchmark and write docs/benchmarks.md.

Each figure is measured in this run next to its peer or its floor, so ratios
compare like with like on whatever machine runs it.
"""

import datetime
import json
import os
import platform
import sys
import statistics
import tempfile
import time

from labhosts import ceph as ceph_lab
from labhosts import lab
from labhosts.topology import parse

from benchmarks import inventory, peers, tenants
from benchmarks.rbd import bench_clones

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPEAT = 3


def timed(func):
    started = time.monotonic()
    result = func()
    return time.monotonic() - started, result


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


def write(raw, sections):
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` on %s (%s, %d cores). Every ratio compares figures measured in"
        % (raw["date"], raw["platform"], raw["cores"]),
        "the same run; the peers are pinned in `requirements-bench.txt`. Medians of %d runs unless a" % REPEAT,
        "section says otherwise.",
        "",
        "## Lab hosts (rootfs cached)",
        "",
        "Time until every host has systemd `running` and answers on SSH, and time to remove",
        "everything again. The floor is one host: the cost of more hosts is what the harness adds.",
        "",
        "| hosts | up (s) | up / floor | down (s) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    floor = raw["lab"][0][1]
    for count, up, down in raw["lab"]:
        lines.append("| %d | %.2f | %.1fx | %.2f |" % (count, up, up / floor, down))
    for section in sections:
        lines += section
    lines.append("")
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines))
    print("\n".join(lines))
    print("written: %s" % path)


def measure():
    """Every benchmark, in one run: the raw figures (as docs/benchmarks.json
    keeps them), a failed section as {"error": message}."""
    found = peers.ensure(lab.cache_dir())
    raw = {"date": datetime.date.today().isoformat(), "platform": platform.platform(), "cores": os.cpu_count(),
           "versions": found["versions"]}
    with tempfile.TemporaryDirectory() as tmp:
        print("inventory: %s domains" % ", ".join(str(c) for c in inventory.COUNTS))
        raw["inventory"] = attempt("Inventory", inventory.bench_inventory, tmp, found)
        print("lab hosts")
        raw["lab"] = bench_lab()
        with tenants.Cloud(tmp) as cloud:
            raw["tenants"] = attempt("Tenant provisioning", tenants.bench_tenants, cloud, found)
            vms = tenants.instances(tenants.CONNECTION_INSTANCES, cloud.keys)
            raw["connection"] = attempt("Connection settings", tenants.bench_connection, cloud, found, vms)
            raw["connection_instances"] = len(vms)
    print("volumes")
    raw["volumes"] = attempt("Volumes (Ceph RBD)", bench_volumes)
    return raw


def attempt(title, func, *args):
    """The result of one benchmark, or {"error": why} (a failed section does
    not lose the others' figures)."""
    try:
        return func(*args)
    except Exception as exc:  # pylint: disable=broad-except
        print("%s failed: %s" % (title, exc))
        return {"error": str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__}


def render(raw):
    """docs/benchmarks.md and the plots from the raw figures."""
    docs = os.path.join(ROOT, "docs")

    def failed(title, value):
        if isinstance(value, dict) and "error" in value:
            return ["", "## " + title, "", "Failed in this run: `%s`" % value["error"]]
        return None

    sections = []
    rows = raw["tenants"]
    if not failed("Tenant provisioning", rows):
        rows = dict((int(count), row) for count, row in rows.items())
        tenants.tenant_plot(rows, os.path.join(docs, "benchmarks-tenants.png"))
        sections.append(tenants.tenant_lines(rows) + ["", "![tenant provisioning](benchmarks-tenants.png)"])
    else:
        sections.append(failed("Tenant provisioning", rows))
    inv = raw["inventory"]
    if not failed("Inventory", inv):
        inventory.inventory_plot(inv, os.path.join(docs, "benchmarks-inventory.png"))
        sections.append([""] + inventory.inventory_lines(inv) + ["", "![inventory](benchmarks-inventory.png)"])
    else:
        sections.append(failed("Inventory", inv))
    volumes = raw["volumes"]
    sections.append(failed("Volumes (Ceph RBD)", volumes) or volume_lines(volumes))
    conn = raw["connection"]
    sections.append(failed("Connection settings", conn) or tenants.connection_lines(conn, raw["connection_instances"]))
    write(raw, sections)


def main():
    path = os.path.join(ROOT, "docs", "benchmarks.json")
    if sys.argv[1:] == ["--render"]:
        # the report again from the figures of the last run (after a change of its text)
        with open(path, encoding="utf-8") as src:
            raw = json.load(src)
    elif sys.argv[1:]:
        sys.exit("usage: python -m benchmarks [--render]")
    else:
        raw = measure()
        with open(path, "w", encoding="utf-8") as out:
            json.dump(raw, out, indent=1, sort_keys=True)
    render(raw)


if __name__ == "__main__":
    main()
