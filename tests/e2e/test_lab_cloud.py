"""`make lab` end to end: the lab cloud built by site.yml from nothing, its
instances answering on the edge's frontend, read back by the `cluster`
inventory and reached through it; no secret in that run's output (at -vvv,
with diffs), in a host's journal or in a file others can read; a second run
changes nothing; an instance set to absent goes, and only it; two runs of
tenants.yml started at once take turns and end consistent; a component lost
in the middle of a run (libvirtd, the OSD, the monitor, HAProxy, radvd) fails
it naming the component or is brought back by it, and a re-run converges with
the data unchanged.

One lab for the module, in the order a user would go; each test needs the
ones before it.
"""

import json
import os
import re
import select
import subprocess
import threading
import time

import pytest
import yaml

from labhosts import cloud, images, lab
from labhosts.topology import parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(ROOT, "lab", "topologies", "cloud.yml")
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def command(state, name, *extra):
    """ansible-playbook running playbooks/``name`` on the lab cloud, with its data."""
    return (["ansible-playbook", "-i", state["inventory"], "-i", os.path.join(ROOT, "inventories", "lab"),
             os.path.join(ROOT, "playbooks", name)] + list(extra))


def recap_of(output):
    return dict((m.group(1), {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                              "failed": int(m.group(5))}) for m in RECAP.finditer(output))


def playbook(state, name, *extra):
    proc = subprocess.run(command(state, name, *extra), capture_output=True, text=True, timeout=3600, check=False,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return recap_of(proc.stdout), proc.stdout


def lab_instances(*stopped):
    """The lab's hardway_instances as the tests leave them: web2 removed, and
    the instances named in ``stopped`` added, defined but not started."""
    with open(os.path.join(ROOT, "inventories", "lab", "group_vars", "all.yml"), encoding="utf-8") as src:
        data = yaml.safe_load(src)
    return ([dict(i, state="absent") if i["name"] == "web2" else i for i in data["hardway_instances"]]
            + [{"name": name, "tenant": "demo", "flavor": "small", "image": "debian12", "networks": ["net100"],
                "state": "stopped"} for name in stopped])


PROMPT = re.compile(r"Perform task: TASK: (.+?) \(N\)o/\(y\)es/\(c\)ontinue: $")


def stepped(state, name, at, fault, *extra):
    """Run playbook ``name`` task by task (--step) and call ``fault()`` when
    the task named ``at`` is next: a component lost in the middle of the run,
    between two of its tasks. Returns (rc, recap, output)."""
    proc = subprocess.Popen(command(state, name, "--step", *extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=ROOT,
                            env=dict(os.environ, ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    chunks, pending, met = [], "", False
    deadline = time.monotonic() + 1800
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([proc.stdout], [], [], left)[0], \
                "the run did not end:\n" + "".join(chunks)[-4000:]
            chunk = os.read(proc.stdout.fileno(), 65536).decode(errors="replace")
            if not chunk:
                break
            chunks.append(chunk)
            pending += chunk
            prompt = PROMPT.search(pending)
            if prompt:
                pending = ""
                answer = "y\n"
                if prompt.group(1) == at:
                    fault()
                    met, answer = True, "c\n"  # and no more steps
                proc.stdin.write(answer.encode())
                proc.stdin.flush()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(chunks)
    assert met, "the run never came to the task %r:\n%s" % (at, output[-4000:])
    return rc, recap_of(output), output


def failures(output):
    """The failed tasks' output, in order: each task's section with FAILED! in it."""
    return [section for section in re.split(r"\n(?=TASK \[|PLAY RECAP)", output) if "FAILED!" in section]


def ssh(state, host, command):
    proc = subprocess.run(["ssh", "-F", state["ssh_config"], "-o", "BatchMode=yes", host, command],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def domains(state, host):
    return set(ssh(state, host, "virsh -q list --all --name").split())


@pytest.fixture(scope="module")
def built(lab_name):
    with open(SPEC, encoding="utf-8") as src:
        spec = yaml.safe_load(src)
    topo = parse(dict(spec, lab=lab_name))
    try:
        state = lab.up(topo, fresh=True, log=lambda _msg: None)
        images.ensure("tenant", lab.cache_dir(), log=lambda _msg: None)
        # as an operator runs it to paste the output into a bug report
        recap, output = playbook(state, "site.yml", "-vvv", "--diff")
        yield {"state": state, "recap": recap, "output": output}
    finally:
        lab.down(lab_name, log=lambda _msg: None)


def test_the_cloud_is_built_and_its_instances_answer_on_the_edge_frontend(built):
    state = built["state"]
    assert set(built["recap"]) == {"hv1", "hv2", "stor1", "edge1", "client"}
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in built["recap"].values()), built["recap"]
    seen = cloud.check(state, log=lambda _msg: None)
    built["seen"] = seen
    # round robin over both instances, each page carrying its own hostname
    assert sorted(set(seen["bodies"])) == ["hello from web1", "hello from web2"]
    assert seen["bodies"].count("hello from web1") == seen["bodies"].count("hello from web2")
    found = seen["instances"]
    assert sorted(found) == ["web1", "web2"]
    # placed on different hypervisors by memory, both on net100 at their derived addresses
    assert {found["web1"]["hardway_vm_hypervisor"], found["web2"]["hardway_vm_hypervisor"]} == {"hv1", "hv2"}
    frontend = ssh(state, "edge1", "cat /etc/haproxy/conf.d/*web*.cfg")
    for name, hostvars in found.items():
        assert hostvars["ansible_host"].startswith("2001:db8:100:0:")
        assert hostvars["hardway_vm_tenant"] == "demo" and hostvars["hardway_vm_state"] == "running"
        assert hostvars["ansible_host"] in frontend  # the backend is the derived address
        assert name in domains(state, hostvars["hardway_vm_hypervisor"])
    for group in ("tenant_demo", "network_net100", "hypervisor_hv1", "hypervisor_hv2", "state_running"):
        assert "@" + group in seen["graph"]


def test_no_secret_is_in_the_output_a_journal_or_a_file_others_can_read(built):
    """The cephx keys of every Ceph entity and the lab's SSH private key are
    in none of the first run's output, nor the journal of any lab host (where
    Ansible logs every module's arguments); every key file is its daemon's or
    root's and not readable by others."""
    state = built["state"]
    listed = ssh(state, "stor1", "ceph auth ls 2>/dev/null")
    # {secret: whose}
    secrets = dict((key, entity) for entity, key in re.findall(r"^(\S+)\n\s*key:\s*(\S+)\s*$", listed, re.MULTILINE))
    assert {"client.admin", "client.hypervisor", "osd.0"} <= set(secrets.values()), sorted(secrets.values())
    with open(state["private_key"], encoding="ascii") as src:
        secrets.update((line, "the SSH private key") for line in src.read().splitlines()
                       if line and not line.startswith("-----"))

    def leaked(text):
        """Whose secrets are in ``text``, and the lines they are on (the secrets masked)."""
        found = [(whose, line.replace(secret, "<SECRET>")[:300]) for secret, whose in secrets.items()
                 for line in text.splitlines() if secret in line]
        return found[:5]

    assert not leaked(built["output"]), "secrets in site.yml's output: %s" % leaked(built["output"])
    for host in ("hv1", "hv2", "stor1", "edge1"):
        journal = ssh(state, host, "journalctl -q -o cat --no-pager")
        assert "Invoked with" in journal, "%s: the journal has no module invocations to look at" % host
        assert not leaked(journal), "secrets in %s's journal: %s" % (host, leaked(journal))
        files = ssh(state, host, "stat -c '%n %a %U' /etc/ceph/*.keyring /var/lib/ceph/*/*keyring "
                                 "/var/lib/ceph/*/*/keyring /etc/libvirt/secrets/* 2>/dev/null; true")
        for line in files.splitlines():
            path, mode, owner = line.rsplit(" ", 2)
            assert int(mode, 8) & 0o027 == 0, "%s on %s is mode %s" % (path, host, mode)
            assert owner == ("ceph" if path.startswith("/var/lib/ceph/") else "root"), (host, line)
        if host in ("hv1", "hv2", "stor1"):
            assert ".keyring" in files, "%s: no key files found to check" % host


def test_the_edges_runtime_sockets_are_not_reachable_from_the_network(built):
    """HAProxy listens on TCP only where the frontends bind (port 80 in the
    lab); its master CLI and the workers' runtime socket are local sockets of
    root (and the haproxy group), which nobody else can open."""
    state = built["state"]
    listening = ssh(state, "edge1", "ss -Hltunp")
    assert set(re.findall(r":(\d+)\s+\S+\s+users:\(\(\"haproxy\"", listening)) == {"80"}, listening
    sockets = ssh(state, "edge1", "stat -c '%n %F %a %U %G' /run/haproxy-master.sock /run/haproxy/admin.sock")
    assert sockets.splitlines() == ["/run/haproxy-master.sock socket 600 root root",
                                    "/run/haproxy/admin.sock socket 660 root haproxy"], sockets


def test_a_second_run_changes_nothing(built):
    recap, output = playbook(built["state"], "site.yml")
    changed = dict((host, r["changed"]) for host, r in recap.items() if r["changed"])
    assert not changed, "changed on a second run: %s\n%s" % (changed, output[-6000:])


def test_an_instance_set_to_absent_goes_and_nothing_else_changes(built, tmp_path):
    state = built["state"]
    before = cloud.instances(cloud.cluster_config(state))
    web2_host = before["web2"]["hardway_vm_hypervisor"]
    web1_uuid = before["web1"]["hardway_vm_uuid"]
    instances = lab_instances()
    extra = tmp_path / "absent.json"
    extra.write_text(json.dumps({"hardway_instances": instances}))
    recap, output = playbook(state, "tenants.yml", "-e", "@%s" % extra)
    assert recap[web2_host]["changed"] > 0 and recap["edge1"]["changed"] > 0, output[-4000:]
    other = "hv1" if web2_host == "hv2" else "hv2"
    assert recap[other]["changed"] == 0, output[-4000:]
    assert "web2" not in domains(state, web2_host)
    volumes = ssh(state, web2_host, "rbd --id hypervisor ls vms").split()
    assert "web2-seed" not in volumes and "web2-root" in volumes  # the root only goes when asked
    after = cloud.instances(cloud.cluster_config(state))
    assert sorted(after) == ["web1"] and after["web1"]["hardway_vm_uuid"] == web1_uuid
    assert after["web1"]["hardway_vm_state"] == "running"
    config = ssh(state, "edge1", "cat /etc/haproxy/conf.d/*web*.cfg")
    assert before["web1"]["ansible_host"] in config and before["web2"]["ansible_host"] not in config
    again, output = playbook(state, "tenants.yml", "-e", "@%s" % extra)
    assert not any(r["changed"] for r in again.values()), output[-4000:]


CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("unreachable: %s" % exc)
"""


def connect(config, instance, address, port):
    """What a TCP connection from ``instance`` to [address]:port meets: connected, refused (both: it reached
    the host) or unreachable."""
    command = "python3 -c 'exec(bytes.fromhex(\"%s\"))' %s %d" % (CONNECT.encode().hex(), address, port)
    out = subprocess.run(["ansible", "-i", config, instance, "-o", "-m", "ansible.builtin.command", "-a", command],
                         capture_output=True, text=True, timeout=300, check=False)
    found = re.search(r"\(stdout\) (connected|refused|unreachable)", out.stdout)
    assert found, out.stdout + out.stderr
    return found.group(1)


def dropped_between_networks(state):
    chain = ssh(state, "edge1", "nft list chain inet hardway_isolation forward")
    return int(re.search(r"counter packets (\d+) bytes \d+ drop", chain).group(1))


def test_vms_on_two_tenant_networks_cannot_reach_each_other(built, tmp_path):
    """A VM of another tenant booted on net200, next to web1 on net100 (edge1
    routes both): neither reaches the other, either way, and the edge's drop
    counter shows it; each still reaches its own gateway, and the edge reaches
    both (the lab's ssh to them goes through it)."""
    state = built["state"]
    instances = lab_instances()
    instances.append({"name": "other200", "tenant": "other", "flavor": "small", "image": "debian12",
                      "networks": ["net200"]})
    extra = tmp_path / "other.json"
    extra.write_text(json.dumps({"hardway_instances": instances}))
    playbook(state, "tenants.yml", "-e", "@%s" % extra)
    config = cloud.cluster_config(state)
    found = cloud.instances(config)
    web1, other = found["web1"]["ansible_host"], found["other200"]["ansible_host"]
    assert other.startswith("2001:db8:200:0:"), other
    deadline = time.monotonic() + 900  # it boots under TCG
    while subprocess.run(["ansible", "-i", config, "other200", "-o", "-m", "ansible.builtin.ping"],
                         capture_output=True, timeout=300, check=False).returncode != 0:
        assert time.monotonic() < deadline, "other200 did not answer"
        time.sleep(10)
    before = dropped_between_networks(state)
    # web1 serves on port 80 and other200 runs sshd: across the networks, neither is met
    assert connect(config, "other200", web1, 80) == "unreachable"
    assert connect(config, "web1", other, 22) == "unreachable"
    assert dropped_between_networks(state) > before
    # each reaches its gateway, the edge's address on its own network (its sshd)
    assert connect(config, "other200", "2001:db8:200::1", 22) in ("connected", "refused")
    assert connect(config, "web1", "2001:db8:100::1", 22) in ("connected", "refused")


def test_two_tenant_runs_at_once_take_turns_and_end_consistent(built, tmp_path):
    """Two operators start tenants.yml at the same moment, both adding the same
    new instances (defined, not started: no boot needed). One run holds the
    tenant lease while the other waits for it; each instance ends defined on
    exactly one hypervisor with one root volume and one seed."""
    state = built["state"]
    instances = lab_instances("race1", "race2")
    extra = tmp_path / "race.json"
    extra.write_text(json.dumps({"hardway_instances": instances}))
    results = {}
    runs = [threading.Thread(target=lambda key=key: results.update({key: playbook(
        state, "tenants.yml", "-v", "-e", "@%s" % extra)})) for key in ("first", "second")]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=3600)
    assert sorted(results) == ["first", "second"], "a run failed (see the assertion above)"
    waits = sorted(float(found) for _recap, output in results.values()
                   for found in re.findall(r'^\s*"?waited"?: ([0-9.]+)', output, re.MULTILINE))
    # each run takes the lease and gives it up (both report waited); one of them waited
    assert len(waits) == 4 and waits[-2] == 0 and waits[-1] > 0, waits
    defined = dict((host, domains(state, host)) for host in ("hv1", "hv2"))
    for name in ("race1", "race2"):
        assert sum(name in names for names in defined.values()) == 1, defined
    volumes = ssh(state, "hv1", "rbd --id hypervisor ls vms").split()
    for name in ("race1", "race2"):
        assert volumes.count(name + "-root") == 1 and volumes.count(name + "-seed") == 1, volumes
    lease = subprocess.run(["ssh", "-F", state["ssh_config"], "-o", "BatchMode=yes", "hv1",
                            "rados --id hypervisor -p vms stat hardway.tenants"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert lease.returncode != 0 and "No such file" in lease.stderr, "the lease was not given up: %s" % lease.stdout


def test_a_component_lost_in_the_middle_of_a_run_fails_it_clearly_and_a_rerun_converges(built, tmp_path):
    """Each component is stopped between two tasks of a run that adds an
    instance (defined, not started). libvirtd, the OSD and the monitor fail
    the run naming them; a lease that could not be given up is named with how
    to end it. HAProxy and radvd, which the roles run, are started again by
    the run. After each, once the component is back, a run converges: the
    instance defined once, with one root and one seed; a 4 MiB data volume
    keeps its checksum throughout."""
    state = built["state"]
    instances = lab_instances("race1", "race2")
    checksum = "rbd export --no-progress vms/faults-data - | sha256sum"
    ssh(state, "stor1", "head -c 4194304 /dev/urandom | rbd import --no-progress - vms/faults-data")
    before = ssh(state, "stor1", checksum)
    libvirtd = ["libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket"]
    osd_back = ("systemctl reset-failed ceph-osd@0; systemctl start ceph-osd@0; "
                "until ceph pg stat | grep -Eq '^[0-9]+ pgs: [0-9]+ active\\+clean;'; do sleep 1; done")
    faults = [
        # (name, task it is lost before, host, stop, start, what the first failure says, the lease stays)
        ("libvirt", "hardway.cloud.tenant : Instances", ("hv1", "hv2"), "systemctl stop " + " ".join(libvirtd),
         "systemctl start " + " ".join(libvirtd[1:] + libvirtd[:1]), "libvirt", False),
        ("osd", "hardway.cloud.tenant : Seeds of the instances (hostname, SSH keys, user data, network config)",
         ("stor1",), "systemctl stop ceph-osd@0", osd_back,
         "the OSDs of pool vms did not answer within 10 s (timeout)", True),
        ("mon", "hardway.cloud.tenant : Volumes of the instances, cloned from their images and sized by their flavors",
         ("stor1",), "systemctl stop ceph-mon@stor1", "systemctl start ceph-mon@stor1; timeout 120 ceph -s",
         "are its monitors (mon_host) reachable and running?", True),
    ]
    extra = tmp_path / "faults.json"
    for name, at, hosts, stop, start, says, lease_stays in faults:
        instances.append({"name": "fault-" + name, "tenant": "demo", "flavor": "small", "image": "debian12",
                          "networks": ["net100"], "state": "stopped"})
        extra.write_text(json.dumps({"hardway_instances": instances, "tenant_ceph_timeout": 10}))
        try:
            rc, _recap, output = stepped(state, "tenants.yml", at, lambda: [ssh(state, host, stop) for host in hosts],
                                         "-e", "@%s" % extra)
        finally:
            for host in hosts:
                ssh(state, host, start)
        failed = failures(output)
        assert rc != 0 and failed and says in failed[0], "%s: %s" % (name, (failed or [output])[0][-3000:])
        held = any("could not be given up" in section and "tenant_lock_break=true" in section for section in failed)
        assert held == lease_stays, "%s: %s" % (name, failed)
        recap, output = playbook(state, "tenants.yml", "-e", "@%s" % extra,
                                 *(["-e", "tenant_lock_break=true"] if lease_stays else []))
        defined = dict((host, domains(state, host)) for host in ("hv1", "hv2"))
        assert sum("fault-" + name in names for names in defined.values()) == 1, defined
        volumes = ssh(state, "hv1", "rbd --id hypervisor ls vms").split()
        assert volumes.count("fault-%s-root" % name) == 1 and volumes.count("fault-%s-seed" % name) == 1, volumes
        assert ssh(state, "stor1", checksum) == before, name

    # HAProxy stopped before the frontends are written: the run writes them and starts it
    extra.write_text(json.dumps({"hardway_instances": instances}))
    rc, recap, output = stepped(state, "tenants.yml", "hardway.cloud.edge : Frontends",
                                lambda: ssh(state, "edge1", "systemctl stop haproxy"), "-e", "@%s" % extra)
    assert rc == 0 and recap["edge1"]["changed"] == 1, output[-4000:]
    assert not recap["hv1"]["changed"] and not recap["hv2"]["changed"], output[-4000:]
    assert ssh(state, "edge1", "systemctl is-active haproxy").strip() == "active"
    assert ":80 " in ssh(state, "edge1", "ss -Hltn")
    # radvd stopped before the advertisements are written: the run starts it
    rc, recap, output = stepped(state, "network.yml", "hardway.cloud.network : Advertise the networks (SLAAC, DNS)",
                                lambda: ssh(state, "edge1", "systemctl stop radvd"), "-v")
    assert rc == 0 and recap["edge1"]["changed"] >= 1 and not recap["hv1"]["changed"], output[-4000:]
    assert '"service_action": "started"' in output, output[-4000:]
    assert ssh(state, "edge1", "systemctl is-active radvd").strip() == "active"
    recap, output = playbook(state, "tenants.yml", "-e", "@%s" % extra)
    assert not any(r["changed"] for r in recap.values()), output[-4000:]
    assert ssh(state, "stor1", checksum) == before
    ssh(state, "stor1", "rbd rm --no-progress vms/faults-data")
