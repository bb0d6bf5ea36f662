"""The lab cloud seen from outside: its `cluster` inventory, the end-to-end
check of `make lab` (and of its test), and the summary it ends with.

The check proves the whole path the way a user would see it:
- from the outside client, HTTP to the edge frontend's IPv4 address is
  answered by every tenant instance in turn, each page carrying the hostname
  cloud-init gave the instance;
- the `cluster` inventory plugin lists the instances with their derived IPv6
  addresses, read from the hypervisors' libvirt;
- Ansible reaches the instances through that inventory (over the edge host
  as a jump host: the tenant networks are routed by the edge, not by the
  machine the lab runs on).
"""

import json
import os
import subprocess
import time

import yaml

from .errors import LabError

# the lab's frontend (inventories/lab: hardway_frontends "web")
FRONTEND_PORT = 80
# the tenant image's cloud-init default user
TENANT_USER = "debian"


def _group_host(state, group):
    for host in state["hosts"]:
        if group in host["groups"]:
            return host
    raise LabError("lab %s has no host in group %s" % (state["lab"], group))


def cluster_config(state):
    """Write the lab's `cluster` inventory source; return its path.

    libvirt's libssh transport takes the lab's key and known-hosts file in the
    URI (OpenSSH's would read ~/.ssh instead). Instances are reached through
    the edge host with the lab's ssh_config.
    """
    hypervisors = [h for h in state["hosts"] if "hypervisors" in h["groups"]]
    edge = _group_host(state, "edge")
    known_tenants = os.path.join(state["dir"], "tenant_known_hosts")
    config = {
        "plugin": "hardway.cloud.cluster",
        "hypervisors": [{"name": h["name"],
                         "uri": "qemu+libssh://root@[%s]/system?keyfile=%s&known_hosts=%s"
                                "&known_hosts_verify=normal&sshauth=privkey"
                                % (h["address"], state["private_key"], state["known_hosts"])}
                        for h in hypervisors],
        "compose": {
            "ansible_user": repr(TENANT_USER),
            "ansible_python_interpreter": repr("/usr/bin/python3"),
            "ansible_ssh_private_key_file": repr(state["private_key"]),
            "ansible_ssh_common_args": repr("-F %s -J %s -o StrictHostKeyChecking=accept-new "
                                            "-o UserKnownHostsFile=%s -o IdentitiesOnly=yes"
                                            % (state["ssh_config"], edge["name"], known_tenants)),
        },
    }
    path = os.path.join(state["dir"], "%s.cluster.yml" % state["lab"])
    with open(path, "w", encoding="utf-8") as out:
        out.write("# lab %s: the cloud's instances, read from the hypervisors; written by labhosts\n" % state["lab"])
        yaml.safe_dump(config, out, default_flow_style=False, sort_keys=False)
    return path


def _ansible(args, timeout=300):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode:
        output = (proc.stdout + proc.stderr).strip()[-3000:]
        raise LabError("%s failed (rc %d): %s" % (" ".join(args[:3]), proc.returncode, output))
    return proc.stdout


def _plain(value):
    """ansible-inventory's JSON with the marks of untrusted (unsafe) values
    ({"__ansible_unsafe": "text"}, which the plugin sets on everything the
    hypervisors said) taken off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return dict((key, _plain(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def instances(config):
    """name -> hostvars of every instance the cluster inventory lists."""
    listing = _plain(json.loads(_ansible(["ansible-inventory", "-i", config, "--list"])))
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    return dict((name, hostvars.get(name, {})) for name in listing.get("hardway_instances", {}).get("hosts", []))


def _http_from_client(state, url, count):
    """Bodies of `count` GETs of url, made on the client host."""
    script = ("import sys, urllib.request\n"
              "for _ in range(%d):\n"
              "    try:\n"
              "        print(urllib.request.urlopen(%r, timeout=5).read().decode().strip())\n"
              "    except Exception as exc:\n"
              "        print('error: %%s' %% exc)\n" % (count, url))
    client = _group_host(state, "clients")
    proc = subprocess.run(["ssh", "-F", state["ssh_config"], client["name"], "python3", "-"], input=script,
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode:
        raise LabError("HTTP from %s failed: %s" % (client["name"], proc.stderr.strip()))
    return proc.stdout.splitlines()


def check(state, log=print, timeout=1200):
    """Run the end-to-end check; return what it saw (raises LabError)."""
    config = cluster_config(state)
    edge = _group_host(state, "edge")
    url = "http://%s:%d/" % (edge["ipv4_address"], FRONTEND_PORT)
    found = instances(config)
    running = sorted(name for name, hv in found.items() if hv.get("hardway_vm_state") == "running")
    if len(running) < 2:
        raise LabError("the cluster inventory lists %d running instances (%s), not at least two"
                       % (len(running), ", ".join(running) or "none"))
    expected = set("hello from %s" % name for name in running)
    log("waiting for %s to answer from %s (tenant VMs boot under TCG: minutes)" % (", ".join(running), url))
    deadline = time.monotonic() + timeout
    seen = set()
    while True:
        bodies = _http_from_client(state, url, 2 * len(running))
        seen |= set(bodies) & expected
        if seen == expected and set(bodies) == expected:
            break
        if time.monotonic() > deadline:
            raise LabError("after %ds %s answered %s; expected every one of %s" % (
                timeout, url, sorted(set(bodies)), sorted(expected)))
        time.sleep(5)
    graph = _ansible(["ansible-inventory", "-i", config, "--graph", "--vars"])
    for name in running:
        address = found[name].get("ansible_host")
        if not address or address not in graph:
            raise LabError("--graph does not show %s with its address %s" % (name, address))
    pings = _ansible(["ansible", "-i", config, "hardway_instances", "-m", "ansible.builtin.ping", "-o"])
    for name in running:
        if not any(line.startswith(name + " | SUCCESS") for line in pings.splitlines()):
            raise LabError("ansible ping did not reach %s: %s" % (name, pings))
    return {"url": url, "bodies": bodies, "instances": found, "config": config, "graph": graph, "ping": pings}


def summary(state, seen):
    rows = [("instance", "hypervisor", "state", "address")]
    for name, hostvars in sorted(seen["instances"].items()):
        rows.append((name, str(hostvars.get("hardway_vm_hypervisor")), str(hostvars.get("hardway_vm_state")),
                     str(hostvars.get("ansible_host"))))
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["", "lab %s: the cloud works end to end" % state["lab"], ""]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, width)).rstrip() for row in rows]
    lines += ["", "frontend:    %s (the lab's outside network: ask it from the client host)" % seen["url"],
              "answers:     %s" % "; ".join(sorted(set(seen["bodies"]))),
              "inventory:   ansible-inventory -i %s --graph" % seen["config"],
              "instances:   ansible -i %s hardway_instances -m ping" % seen["config"],
              "tear down:   make lab-down" + ("" if state["lab"] == "cloud" else " LAB=%s" % state["lab"])]
    return "\n".join(lines)
