"""Bring a whole lab up and down, and describe it for Ansible and for people."""

import json
import os
import shutil
import signal
import time

import yaml

from . import cgroups, host, net, rootfs
from .errors import LabError
from .system import alive, comm, kill, run, wait_gone
from .topology import controller_link_name, lab_prefix

RELAY_UPSTREAM = "deb.debian.org"
STOP_TIMEOUT = 20


def cache_dir():
    return os.environ.get("HARDWAY_CACHE", "/var/cache/hardway-cloud")


def state_root():
    return os.environ.get("HARDWAY_LAB_STATE", os.path.join(cache_dir(), "labs"))


def state_dir(lab):
    return os.path.join(state_root(), lab)


def _log(msg):
    print("lab: " + msg, flush=True)


def _running(topo):
    """The state of this lab if it is up, whole, and made from the same spec."""
    try:
        state = load_state(topo.lab)
    except LabError:
        return None
    if state.get("spec") != topo.spec():  # includes states of older harness versions
        return None
    if any("ipv4_address" not in h for h in state["hosts"]):  # made before hosts had IPv4
        return None
    pids = [state["relay_pid"]] + [p for h in state["hosts"] for p in (h["nspawn_pid"], h["leader_pid"])]
    return state if all(alive(p) for p in pids) else None


def up(topo, fresh=False, log=_log):
    """Bring the lab up; keep it when it already runs as specified (unless fresh).

    Anything else of that name (a different spec, a host that died, what a
    killed run left) is torn down first. On any failure, what was made is torn
    down again.
    """
    if not fresh:
        state = _running(topo)
        if state:
            log("lab %s is already up as specified: kept" % topo.lab)
            return state
    down(topo.lab, log=lambda _msg: None)
    started = time.monotonic()
    root_tree = rootfs.ensure(cache_dir(), log=log)
    sdir = state_dir(topo.lab)
    os.makedirs(sdir, mode=0o700)
    try:
        key = os.path.join(sdir, "id_ed25519")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hardway-lab-" + topo.lab, "-f", key])
        with open(key + ".pub", encoding="ascii") as pub:
            pubkey = pub.read()
        net.create_fabric(topo)
        relay_log = os.path.join(sdir, "relay.log")
        _reaper, relay_pid = cgroups.spawn(topo.relay_cgroup, net.relay_command(topo, RELAY_UPSTREAM), relay_log)
        hostkeys, procs = {}, {}
        for member in topo.hosts:
            hdir = os.path.join(sdir, "hosts", member.name)
            net.create_host_link(topo, member)
            root = host.mount_overlay(root_tree, hdir)
            hostkeys[member.name] = host.prepare(root, topo, member, pubkey, [RELAY_UPSTREAM])
            procs[member.name] = host.start(root, topo, member, os.path.join(hdir, "console.log"))
        leaders = {}
        for member in topo.hosts:
            leaders[member.name] = host.leader(*procs[member.name])
        for member in topo.hosts:
            host.wait_booted(leaders[member.name], member.name)
            host.wait_ssh(member.address)
        _write_state(topo, sdir, root_tree, hostkeys, procs, leaders, relay_pid)
    except BaseException:
        log("bring-up failed; tearing down what was made")
        down(topo.lab, log=log)
        raise
    log("lab %s up: %d hosts in %.1f s; inventory %s" % (
        topo.lab, len(topo.hosts), time.monotonic() - started, os.path.join(sdir, "inventory.yml")))
    return load_state(topo.lab)


def _write_state(topo, sdir, root_tree, hostkeys, procs, leaders, relay_pid):
    key = os.path.join(sdir, "id_ed25519")
    known = os.path.join(sdir, "known_hosts")
    with open(known, "w", encoding="ascii") as out:
        for member in topo.hosts:
            out.write("%s,%s %s\n" % (member.name, member.address, " ".join(hostkeys[member.name])))
    ssh_args = "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes" % known
    inventory = {"all": {
        "vars": {
            "ansible_user": "root",
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": key,
            "ansible_ssh_common_args": ssh_args,
        },
        "hosts": {m.name: {"ansible_host": str(m.address), "lab_ipv4_address": str(m.ipv4_address)}
                  for m in topo.hosts},
        "children": {g: {"hosts": {h: None for h in members}} for g, members in topo.groups().items()},
    }}
    with open(os.path.join(sdir, "inventory.yml"), "w", encoding="utf-8") as out:
        out.write("# lab %s, written by labhosts; removed by 'down'\n" % topo.lab)
        yaml.safe_dump(inventory, out, default_flow_style=False, sort_keys=False)
    with open(os.path.join(sdir, "ssh_config"), "w", encoding="utf-8") as out:
        for member in topo.hosts:
            out.write("Host %s\n  HostName %s\n  User root\n  IdentityFile %s\n  UserKnownHostsFile %s\n"
                      "  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n\n"
                      % (member.name, member.address, key, known))
    state = {
        "lab": topo.lab,
        "spec": topo.spec(),
        "relay_pid": relay_pid,
        "prefix": str(topo.prefix),
        "controller_address": str(topo.controller_address),
        "controller_link": topo.controller_link,
        "fabric_netns": topo.fabric_netns,
        "rootfs": root_tree,
        "dir": sdir,
        "inventory": os.path.join(sdir, "inventory.yml"),
        "ssh_config": os.path.join(sdir, "ssh_config"),
        "private_key": key,
        "known_hosts": known,
        "hosts": [dict(m.as_dict(), nspawn_pid=procs[m.name][1], leader_pid=leaders[m.name],
                       hostdir=os.path.join(sdir, "hosts", m.name)) for m in topo.hosts],
    }
    with open(os.path.join(sdir, "state.json"), "w", encoding="utf-8") as out:
        json.dump(state, out, indent=2)


def load_state(lab):
    path = os.path.join(state_dir(lab), "state.json")
    try:
        with open(path, encoding="utf-8") as src:
            return json.load(src)
    except FileNotFoundError as exc:
        raise LabError("lab %s is not up (no %s)" % (lab, path)) from exc


def _mounts_below(path):
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def _stop_processes(lab, groups, log):
    """Stop every process in the lab's cgroups; True if there were any.

    The cgroups are read again on every round: a host killed mid-boot still
    starts services while it is being stopped.
    """
    pids = cgroups.pids(groups)
    if not pids:
        return False
    kill([p for p in pids if comm(p) == "socat"], signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while pids and time.monotonic() < deadline:
        # nspawn turns SIGTERM into an orderly shutdown of the host's systemd;
        # asked again every round, because a host's systemd that has not yet
        # set up its handlers (killed mid-boot) drops the request
        kill([p for p in pids if comm(p) == "systemd-nspawn"], signal.SIGTERM)
        wait_gone(pids, 1.0)
        pids = cgroups.pids(groups)
    if pids:
        log("killing the processes that did not stop within %ds" % STOP_TIMEOUT)
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            kill(pids)
            wait_gone(pids, 0.5)
            pids = cgroups.pids(groups)
    if pids:
        raise LabError("lab %s: processes %s do not go away" % (lab, pids))
    return True


def down(lab, log=_log):
    """Remove everything of this lab that exists, whether or not it came up whole.

    Found by name, not only from the state file, so a crashed or killed run is
    cleaned up too: processes in the lab's cgroups, overlay mounts below its
    state directory, its namespaces and controller link, its cgroups, its files.
    """
    prefix = lab_prefix(lab)
    groups = cgroups.lab_dirs(prefix)
    stopped_any = _stop_processes(lab, groups, log)
    sdir = state_dir(lab)
    for point in _mounts_below(sdir):
        if run(["umount", point], check=False).returncode != 0:
            run(["umount", "--lazy", point])
    net.delete_netns(net.list_netns("hwl." + prefix))
    net.delete_link(controller_link_name(lab))
    cgroups.remove(groups)
    shutil.rmtree(sdir, ignore_errors=True)
    if stopped_any or groups:
        log("lab %s down" % lab)


def labs():
    """Names of labs that have a state directory."""
    root = state_root()
    return sorted(os.listdir(root)) if os.path.isdir(root) else []
