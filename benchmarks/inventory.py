"""The cluster inventory: ``ansible-inventory --list`` of hardway.cloud.cluster
against its peer community.libvirt.libvirt (one source per hypervisor, as that
plugin takes one URI), over 10 hypervisors of libvirt's test driver holding
10 to 10,000 tenant VMs, measured in the same run, next to three floors: the
start-up of ``ansible-inventory`` itself (a static inventory of one host), the
raw libvirt calls alone (open the 10 URIs read-only, list the domains and read
their XML, in this process), and Ansible with these hosts: ``ansible-inventory
--list`` of a plugin that hands Ansible the cluster plugin's hosts, groups and
host variables ready-made (read from the cluster plugin's own listing, no
libvirt), which is what any inventory source setting these variables costs.

The test driver runs in the process that opens the URI: it parses the node
file on open, which a real hypervisor does in its own daemon. That parsing is
in every figure alike (the floor included).
"""

import json
import math
import os
import statistics
import subprocess
import threading
import time

from labhosts.testdriver import RUNNING, SHUTOFF, node, tenant_vm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNTS = (10, 100, 1000, 10000)
HYPERVISORS = 10
TENANTS = 10
# a peer run longer than this is measured once at the larger counts
PEER_SLOW = 120.0
# a run that takes longer than this is a failure
RUN_TIMEOUT = 900
GOAL_COUNT, GOAL_SECONDS, GOAL_SPEEDUP = 1000, 1.0, 10.0


def _mac(index):
    """A locally administered unicast MAC per VM (the NIC's SLAAC address
    is derived from it, as in the cloud)."""
    return "02:%02x:%02x:%02x:%02x:00" % ((index >> 24) & 255, (index >> 16) & 255, (index >> 8) & 255, index & 255)


def _vm(index):
    """VM ``index``: tenant tN on its network (a /64 each), an RBD root and
    seed, one bridge NIC; every tenth shut off."""
    tenant = index % TENANTS
    network = ("net%d" % tenant, "2001:db8:%x::/64" % (0x100 + tenant))
    return tenant_vm("vm%05d" % index, "t%d" % tenant, [network], state=SHUTOFF if index % 10 == 9 else RUNNING,
                     mac=lambda _name, _nic: _mac(index))


def write_sources(workdir, count):
    """The node files of ``count`` VMs over the hypervisors, the cluster
    configuration naming them all, and one community.libvirt source per
    hypervisor: (cluster config, [peer sources], [uris])."""
    directory = os.path.join(workdir, "n%d" % count)
    os.makedirs(directory, exist_ok=True)
    per = count // HYPERVISORS
    uris, peers, entries = [], [], []
    for hyp in range(HYPERVISORS):
        uri = node(os.path.join(directory, "hv%d.xml" % hyp), *[_vm(hyp * per + i) for i in range(per)])
        uris.append(uri)
        entries.append("  - name: hv%d\n    uri: %s\n" % (hyp, uri))
        peer = os.path.join(directory, "hv%d.libvirt.yml" % hyp)
        with open(peer, "w", encoding="utf-8") as out:
            out.write("plugin: community.libvirt.libvirt\nuri: %s\n" % uri)
        peers.append(peer)
    config = os.path.join(directory, "bench.cluster.yml")
    with open(config, "w", encoding="utf-8") as out:
        # no cache: every run asks the hypervisors
        out.write("plugin: hardway.cloud.cluster\ncache: false\nhypervisors:\n" + "".join(entries))
    return config, peers, uris


# the plugin of the "Ansible with these hosts" floor, written into the work
# directory (it is no part of the collection)
HOSTS_PLUGIN = "hardway_bench_hosts"
HOSTS_PLUGIN_SOURCE = '''
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r"""
name: hardway_bench_hosts
short_description: The hosts of an ansible-inventory --list JSON file
description: Its hosts, groups and host variables, set as an inventory plugin sets them (untrusted).
options:
  plugin:
    description: Marks the file.
    required: true
  listing:
    description: The JSON file.
    required: true
"""

import json

from ansible.plugins.inventory import BaseInventoryPlugin


def _plain(value):
    if isinstance(value, dict):
        if list(value) == ["__ansible_unsafe"]:
            return value["__ansible_unsafe"]
        return dict((key, _plain(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class InventoryModule(BaseInventoryPlugin):

    NAME = "hardway_bench_hosts"
    trusted_by_default = False

    def verify_file(self, path):
        return path.endswith("hosts.yml")

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        with open(self.get_option("listing")) as src:
            listing = json.load(src)
        for host, variables in listing["_meta"]["hostvars"].items():
            self.inventory.add_host(host)
            for key, value in variables.items():
                self.inventory.set_variable(host, key, _plain(value))
        for name, group in listing.items():
            if name not in ("_meta", "all") and group.get("hosts"):
                self.inventory.add_group(name)
                for host in group["hosts"]:
                    self.inventory.add_child(name, host)
'''


def write_hosts_source(workdir, directory, listing):
    """The source of the "Ansible with these hosts" floor: the plugin (once)
    and a configuration naming ``listing`` (a --list JSON) saved in
    ``directory``: (configuration, plugin directory)."""
    plugins = os.path.join(workdir, "inventory_plugins")
    os.makedirs(plugins, exist_ok=True)
    with open(os.path.join(plugins, HOSTS_PLUGIN + ".py"), "w", encoding="utf-8") as out:
        out.write(HOSTS_PLUGIN_SOURCE)
    saved = os.path.join(directory, "listing.json")
    with open(saved, "w", encoding="utf-8") as out:
        json.dump(listing, out)
    config = os.path.join(directory, "bench.hosts.yml")
    with open(config, "w", encoding="utf-8") as out:
        out.write("plugin: %s\nlisting: %s\n" % (HOSTS_PLUGIN, saved))
    return config, plugins


def _same_hosts(listing, other):
    """Whether two --list JSONs have the same host variables and group members."""
    def members(found):
        return dict((name, sorted(group.get("hosts", []))) for name, group in found.items()
                    if name not in ("_meta", "all") and group.get("hosts"))
    return listing["_meta"] == other["_meta"] and members(listing) == members(other)


def _env(peers):
    collections = os.path.join(ROOT, ".tmp", "collections")
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH="%s:%s" % (collections, peers["collections"]),
                ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_INVENTORY_UNPARSED_FAILED="1", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1",
                ANSIBLE_INVENTORY_CACHE="0")


def run_inventory(sources, env):
    """One ``ansible-inventory -i SOURCE... --list``: (wall seconds, its JSON)."""
    argv = ["ansible-inventory"]
    for source in sources:
        argv += ["-i", source]
    started = time.monotonic()
    proc = subprocess.run(argv + ["--list"], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), proc.returncode, proc.stderr[-2000:]))
    return elapsed, json.loads(proc.stdout)


def _hosts(listing):
    found = set(listing.get("_meta", {}).get("hostvars", {}))
    for name, group in listing.items():
        if name != "_meta":
            found.update(group.get("hosts", []))
    return found


def check_cluster(listing, count):
    hosts = _hosts(listing)
    members = listing.get("hardway_instances", {}).get("hosts", [])
    hostvars = listing["_meta"]["hostvars"]
    if len(hosts) != count or len(members) != count or \
            any("ansible_host" not in hostvars[host] for host in members):
        raise RuntimeError("hardway.cloud.cluster listed %d hosts (%d in hardway_instances), not %d tenant VMs with "
                           "an address" % (len(hosts), len(members), count))


def check_peer(listing, count):
    hosts = _hosts(listing)
    if len(hosts) != count or any("xml_desc" not in listing["_meta"]["hostvars"][host] for host in hosts):
        raise RuntimeError("community.libvirt.libvirt listed %d hosts, not %d domains with their XML"
                           % (len(hosts), count))


def _list_xml(libvirt, uri):
    conn = libvirt.openReadOnly(uri)
    try:
        return [domain.XMLDesc(0) for domain in conn.listAllDomains()]
    finally:
        conn.close()


def raw_libvirt(uris, threaded):
    """The floor: open every URI read-only, list its domains and read their
    XML, in this process (a thread per URI, or one after the other):
    (seconds, number of domains)."""
    import libvirt  # pylint: disable=import-outside-toplevel
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    results = [None] * len(uris)

    def work(index):
        results[index] = _list_xml(libvirt, uris[index])

    started = time.monotonic()
    if threaded:
        threads = [threading.Thread(target=work, args=(index,)) for index in range(len(uris))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for index in range(len(uris)):
            work(index)
    elapsed = time.monotonic() - started
    return elapsed, sum(len(xmls) for xmls in results if xmls is not None)


def _median(values):
    return statistics.median(values) if values else None


def _loadavg():
    try:
        with open("/proc/loadavg", encoding="utf-8") as src:
            return float(src.read().split()[0])
    except (OSError, ValueError):
        return None


def bench_inventory(workdir, peers, repeat=3, counts=COUNTS, log=None):
    """The medians of ``repeat`` runs per count of domains, in ``workdir``:
    {"rows": [{"domains", "cluster", "peer", "peer_runs", "floor",
    "floor_threads", "floor_serial", "hosts"}] (seconds; "hosts": Ansible
    with the cluster plugin's hosts ready-made), "startup", "repeat",
    "hypervisors", "load" (1-minute load averages seen), "versions"}. Once a
    peer run takes more than PEER_SLOW seconds, the peer is measured once per
    count. Raises when a tool lists other than the expected hosts."""
    log = log or (lambda _msg: None)
    env = _env(peers)
    static = os.path.join(workdir, "static.ini")
    with open(static, "w", encoding="utf-8") as out:
        out.write("h0\n")
    loads = [_loadavg()]
    startup = []
    for _run in range(repeat):
        seconds, listing = run_inventory([static], env)
        if _hosts(listing) != {"h0"}:
            raise RuntimeError("the static inventory listed %s" % sorted(_hosts(listing)))
        startup.append(seconds)
    rows = []
    peer_slow = False
    for count in counts:
        config, sources, uris = write_sources(workdir, count)
        cluster, peer, floor_threads, floor_serial, hosts = [], [], [], [], []
        hosts_source = saved = hosts_env = None
        for _run in range(repeat):
            seconds, listing = run_inventory([config], env)
            check_cluster(listing, count)
            cluster.append(seconds)
            if hosts_source is None:
                # the listing of the first run (the test driver makes up a UUID per open)
                saved = listing
                hosts_source, plugins = write_hosts_source(workdir, os.path.dirname(config), saved)
                hosts_env = dict(env, ANSIBLE_INVENTORY_PLUGINS=plugins)
            seconds, given = run_inventory([hosts_source], hosts_env)
            if not _same_hosts(saved, given):
                raise RuntimeError("the ready-made hosts do not list what hardway.cloud.cluster lists")
            hosts.append(seconds)
            if not (peer_slow and peer):
                seconds, listing = run_inventory(sources, env)
                check_peer(listing, count)
                peer.append(seconds)
                peer_slow = peer_slow or seconds > PEER_SLOW
            for threaded, into in ((True, floor_threads), (False, floor_serial)):
                seconds, found = raw_libvirt(uris, threaded)
                if found != count:
                    raise RuntimeError("libvirt listed %d domains, not %d" % (found, count))
                into.append(seconds)
            loads.append(_loadavg())
        row = {"domains": count, "cluster": _median(cluster), "peer": _median(peer), "peer_runs": len(peer),
               "floor_threads": _median(floor_threads), "floor_serial": _median(floor_serial),
               "hosts": _median(hosts)}
        row["floor"] = min(row["floor_threads"], row["floor_serial"])
        rows.append(row)
        log("inventory %d: cluster %s s, peer %s s, floor %s s, Ansible with these hosts %s s"
            % (count, _fmt(row["cluster"]), _fmt(row["peer"]), _fmt(row["floor"]), _fmt(row["hosts"])))
    return {"rows": rows, "startup": _median(startup), "repeat": repeat, "hypervisors": HYPERVISORS,
            "load": [load for load in loads if load is not None], "versions": peers.get("versions", {})}


def _exponent(rows, key):
    """How the time of ``key`` grows with the domains from 1,000 to 10,000
    (the exponent of a power law through the two points) and per 1,000
    domains (seconds)."""
    points = dict((row["domains"], row[key]) for row in rows if row.get(key))
    if 1000 not in points or 10000 not in points:
        return None, None
    return math.log10(points[10000] / points[1000]), (points[10000] - points[1000]) / 9


def _fmt(value, digits=2):
    return "-" if value is None else "%.*f" % (digits, value)


def _speedup(row):
    return row["peer"] / row["cluster"] if row["peer"] and row["cluster"] else None


def _goal(row, startup):
    """The sentence on the goal, from the row of GOAL_COUNT domains."""
    speedup = _speedup(row)
    under = row["cluster"] < GOAL_SECONDS
    fast = speedup is not None and speedup >= GOAL_SPEEDUP
    if under and fast:
        verdict = "met"
    elif not under and not fast:
        verdict = "not met"
    else:
        verdict = "half met (%s)" % ("under %g s, but not %gx" % (GOAL_SECONDS, GOAL_SPEEDUP) if under
                                     else "%gx, but not under %g s" % (GOAL_SPEEDUP, GOAL_SECONDS))
    if speedup is None:
        versus = "the peer was not measured"
    elif speedup >= 1:
        versus = "%.1fx faster than the peer (%.2f s)" % (speedup, row["peer"])
    else:
        versus = "%.1fx slower than the peer (%.2f s)" % (1 / speedup, row["peer"])
    goal = ("Goal (%s domains in under %g s, at least %gx faster than the peer): %s. %s domains took %.2f s, %s."
            % ("{:,}".format(GOAL_COUNT), GOAL_SECONDS, GOAL_SPEEDUP, verdict, "{:,}".format(GOAL_COUNT),
               row["cluster"], versus))
    if row.get("hosts") is None:
        # figures of a run before the "Ansible with these hosts" floor
        limit = startup + row["floor"]
        return goal + (" Ansible's start-up (%.2f s) and the libvirt calls alone (%.2f s) add up to %.2f s. The rest, "
                       "%.2f s, is the plugin's own work and Ansible's for its hosts."
                       % (startup, row["floor"], limit, row["cluster"] - limit))
    hosts, limit = row["hosts"], row["hosts"] + row["floor"]
    rest = row["cluster"] - limit
    return goal + (
        " Ansible alone, handed these %s hosts with their groups and variables ready-made (no libvirt), takes %.2f s: "
        "its start-up (%.2f s) and %.2f s for the hosts (storing their variables, reading them back per host, "
        "writing the JSON). That is the limit of any inventory source that sets these variables, %s %g s; with the "
        "libvirt calls alone (%.2f s) it is %.2f s. A source at %.2f s would be %.1fx faster than the peer; %gx "
        "would take %.2f s%s. %s"
        % ("{:,}".format(GOAL_COUNT), hosts, startup, hosts - startup, "over" if hosts >= GOAL_SECONDS else "under",
           GOAL_SECONDS, row["floor"], limit, hosts, row["peer"] / hosts if row["peer"] else float("nan"),
           GOAL_SPEEDUP, row["peer"] / GOAL_SPEEDUP if row["peer"] else float("nan"),
           ", less than Ansible's start-up" if row["peer"] and row["peer"] / GOAL_SPEEDUP < startup else "",
           "The rest, %.2f s, is the plugin's own work (reading the XML into the records, its groups)." % rest
           if rest > 0.005 else "The plugin's own work (reading the XML into the records) adds nothing measurable: "
           "it runs while the other hypervisors answer."))


def inventory_lines(result):
    """The section of docs/benchmarks.md: a table and what it means."""
    rows, startup = result["rows"], result["startup"]
    loads = result.get("load") or []
    lines = [
        "## Inventory",
        "",
        "`ansible-inventory -i SOURCE --list`, a process as a user runs it, over %(hyp)d hypervisors of libvirt's "
        "test driver (`test:///…/hvN.xml`) holding tenant VMs (an RBD root and seed, one bridge NIC with its MAC, "
        "the collection's metadata): hardway.cloud.cluster (one configuration naming the %(hyp)d URIs, no cache) "
        "against community.libvirt.libvirt%(version)s (one source file per URI, as it takes one URI, all given with "
        "`-i`). Medians of %(repeat)d runs. \"floor\": the libvirt calls alone, in one Python process (open the "
        "URIs read-only, list the domains, `XMLDesc` each; the better of a thread per URI and one after the "
        "other); the test driver parses its node file in the process that opens it, so that parsing is in every "
        "figure. \"Ansible start-up\": `ansible-inventory --list` of a static inventory of one host. \"Ansible with "
        "these hosts\": `ansible-inventory --list` of a plugin that hands Ansible the hosts, groups and host variables "
        "of the cluster plugin's listing ready-made (read from a JSON file, no libvirt; the same `--list` output): "
        "what Ansible costs for these hosts whatever the source."
        % {"hyp": result["hypervisors"], "repeat": result["repeat"],
           "version": " of the ansible %s package" % result["versions"]["ansible"]
           if result.get("versions", {}).get("ansible") else ""},
        "",
        "| domains | cluster s | peer s | speedup × | floor s | Ansible with these hosts s | Ansible start-up s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        peer = _fmt(row["peer"]) + (" (1 run)" if row["peer"] is not None and row["peer_runs"] < result["repeat"]
                                    else "")
        cells = ["{:,}".format(row["domains"]), _fmt(row["cluster"]), peer, _fmt(_speedup(row), 1),
                 _fmt(row["floor"]), _fmt(row.get("hosts")), _fmt(startup)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    goal = [row for row in rows if row["domains"] == GOAL_COUNT]
    if goal:
        lines.append(_goal(goal[0], startup))
    growth = []
    for key, label in (("cluster", "hardway.cloud.cluster"), ("peer", "community.libvirt.libvirt"),
                       ("floor", "the floor"), ("hosts", "Ansible with these hosts")):
        exponent, per_thousand = _exponent(rows, key)
        if exponent is not None:
            growth.append("%s %.2f s per 1,000 more (time ∝ N^%.2f)" % (label, per_thousand, exponent))
    if growth:
        lines += ["", "From 1,000 to 10,000 domains: " + "; ".join(growth) + "."]
    lines += [
        "",
        "The peer sets less per host: the domain's XML as one string, unread, `virDomainGetInfo`'s numbers, and "
        "the answers of the guest agent calls (`guestInfo`, `interfaceAddresses`), which the test driver refuses "
        "or makes up (libvirt prints each refusal on stderr). The cluster plugin reads the XML into the tenant, "
        "networks, derived addresses, volumes and groups: more values per host, each string an object of its own "
        "in the JSON (marked unsafe, as the peer's are). The peer opens the URIs read-write, one source after the "
        "other, and makes a group per domain, named by its UUID.",
    ]
    slow = [row for row in rows if row["peer_runs"] < result["repeat"]]
    if slow:
        lines += ["", "The peer took more than %d s per run at %s domains, so it was measured once there."
                  % (PEER_SLOW, ", ".join("{:,}".format(row["domains"]) for row in slow))]
    if loads:
        lines += ["", "Load average (1 min) during the runs: %.1f-%.1f, on %d cores."
                  % (min(loads), max(loads), os.cpu_count() or 0)]
    return lines


def inventory_plot(result, path):
    """Time against domains, log-log: cluster, peer, the libvirt floor, the
    start-up of ansible-inventory and the two together; a PNG at ``path``."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

    rows = result["rows"]
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for key, label, style in (("cluster", "hardway.cloud.cluster", "o-"), ("peer", "community.libvirt.libvirt", "s-"),
                              ("floor", "libvirt calls alone (floor)", "^--"),
                              ("hosts", "Ansible with these hosts ready-made", "v--")):
        points = [(row["domains"], row[key]) for row in rows if row.get(key)]
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    limit = [(row["domains"], result["startup"] + row["floor"]) for row in rows if row.get("floor")]
    if limit:
        axes.plot([p[0] for p in limit], [p[1] for p in limit], "-.", color="black", linewidth=1,
                  label="start-up + floor (the limit)")
    axes.axhline(result["startup"], color="grey", linestyle=":", label="ansible-inventory start-up")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("domains (over %d hypervisors)" % result["hypervisors"])
    axes.set_ylabel("seconds (median)")
    axes.set_title("ansible-inventory --list")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
