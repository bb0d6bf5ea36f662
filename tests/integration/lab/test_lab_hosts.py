"""Lab hosts: real systemd, SSH, an IPv6 fabric with multicast, the apt relay,
devices for hypervisors, and a teardown that leaves nothing behind."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from labhosts import cgroups, lab
from labhosts.system import wait_gone
from labhosts.topology import controller_link_name, parse

from conftest import lab_name

LAB_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab")

MCAST_RECEIVER = r"""
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 4789))
group = socket.inet_pton(socket.AF_INET6, "ff05::100") + struct.pack("@I", socket.if_nametoindex("eth0"))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
print("joined", flush=True)
s.settimeout(15)
data, peer = s.recvfrom(100)
print(data.decode(), peer[0])
"""

MCAST_SENDER = r"""
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("eth0"))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 5)
for _ in range(20):
    s.sendto(b"over-the-fabric", ("ff05::100", 4789))
    time.sleep(0.25)
"""


@pytest.fixture(scope="module")
def trio(lab_factory):
    return lab_factory({"lab": "it-trio", "hosts": [
        {"name": "hv1", "groups": ["hypervisors"], "devices": ["kvm", "tun"]},
        {"name": "stor1", "groups": ["storage"]},
        {"name": "edge1", "groups": ["edge"]},
    ]})


def test_hosts_run_their_own_systemd_and_ansible_reaches_them(trio, tmp_path):
    for name in ("hv1", "stor1", "edge1"):
        assert trio.ssh(name, "systemctl is-system-running").stdout.strip() == "running"
        assert trio.ssh(name, "cat /proc/1/comm").stdout.strip() == "systemd"
    playbook = tmp_path / "facts.yml"
    playbook.write_text("""
- hosts: all
  gather_facts: true
  tasks:
    - ansible.builtin.assert:
        that:
          - ansible_service_mgr == 'systemd'
          - ansible_hostname == inventory_hostname
""")
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run([ansible_playbook, "-i", trio.state["inventory"], str(playbook)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("hv1", "stor1", "edge1"):
        assert re.search(r"^%s\s+: ok=2 .* failed=0" % name, proc.stdout, re.M), proc.stdout


def test_inventory_groups_and_strict_host_keys(trio):
    with open(trio.state["inventory"], encoding="utf-8") as src:
        text = src.read()
    assert "StrictHostKeyChecking=yes" in text
    for group in ("hypervisors", "storage", "edge"):
        assert group + ":" in text
    with open(trio.state["known_hosts"], encoding="ascii") as known:
        assert len(known.read().splitlines()) == 3


def test_each_host_has_its_own_identity(trio):
    seen = {"machine-id": set(), "hostkey": set()}
    for name in ("hv1", "stor1", "edge1"):
        assert trio.ssh(name, "hostname").stdout.strip() == name
        seen["machine-id"].add(trio.ssh(name, "cat /etc/machine-id").stdout.strip())
        seen["hostkey"].add(trio.ssh(name, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1])
    assert len(seen["machine-id"]) == 3
    assert len(seen["hostkey"]) == 3


def test_hosts_reach_each_other_by_name_over_ipv6(trio):
    out = trio.ssh("hv1", "ping -6 -c 1 -W 2 stor1 && ping -6 -c 1 -W 2 edge1").stdout
    assert out.count("1 received") == 2


def test_multicast_crosses_the_fabric(trio):
    receiver = subprocess.Popen(
        ["ssh", "-F", trio.state["ssh_config"], "-o", "BatchMode=yes", "stor1", "python3 -"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        receiver.stdin.write(MCAST_RECEIVER)
        receiver.stdin.close()
        assert receiver.stdout.readline().strip() == "joined"
        trio.ssh("hv1", "python3 -", input_text=MCAST_SENDER)
        receiver.wait(timeout=30)
        out = receiver.stdout.read()
    finally:
        receiver.kill()
        receiver.wait()
    assert receiver.returncode == 0, receiver.stderr.read()
    assert out.split() == ["over-the-fabric", trio.host("hv1")["address"]]


def test_hypervisor_hosts_get_kvm_and_tun_and_writable_cgroups(trio):
    trio.ssh("hv1", "exec 3<>/dev/kvm && exec 4<>/dev/net/tun")
    assert trio.ssh("stor1", "test -e /dev/kvm", check=False).returncode != 0
    # libvirt makes cgroups for its guests: the controllers must be writable
    trio.ssh("hv1", "mkdir /sys/fs/cgroup/memory/labtest && rmdir /sys/fs/cgroup/memory/labtest")


def test_apt_reaches_the_debian_mirror_through_the_relay(trio):
    out = trio.ssh("edge1", "apt-get -q update && apt-cache policy haproxy", timeout=120).stdout
    assert "Candidate:" in out and "(none)" not in out.split("Candidate:")[1].splitlines()[0]


def test_the_machine_never_takes_router_advertisements_from_the_lab(trio):
    link = trio.state["controller_link"]
    for knob in ("accept_ra", "autoconf"):
        with open("/proc/sys/net/ipv6/conf/%s/%s" % (link, knob), encoding="ascii") as value:
            assert value.read().strip() == "0"


def _leftovers(name):
    """Everything of a lab that can outlive it, as a dict of non-empty findings."""
    prefix = "hwl.%s." % name
    netns = subprocess.run(["ip", "-o", "netns", "list"], capture_output=True, text=True, check=True).stdout
    sdir = lab.state_dir(name)
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        mounts = [line.split()[4] for line in info if line.split()[4].startswith(sdir)]
    groups = cgroups.lab_dirs(name + ".")
    found = {
        "netns": [line.split()[0] for line in netns.splitlines() if line.startswith(prefix)],
        "link": os.path.exists("/sys/class/net/" + controller_link_name(name)),
        "mounts": mounts,
        "cgroups": groups,
        "processes": cgroups.pids(groups),
        "state": os.path.exists(sdir),
    }
    return {k: v for k, v in found.items() if v}


def test_up_after_a_killed_run_works_and_down_leaves_nothing(lab_factory):
    name = lab_name("it-crash")
    cli_args = ["--lab", name, "--host", "n1", "--host", "n2+tun"]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(LAB_DIR))
    killed = subprocess.Popen([sys.executable, "-m", "labhosts", "up"] + cli_args, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # kill the harness once a host is booting: namespaces, mounts and
        # containers are left behind with no state file
        deadline = time.monotonic() + 120
        while not any(subprocess.run(["pgrep", "-P", str(p), "systemd"], capture_output=True,
                                     check=False).returncode == 0 for p in cgroups.pids(cgroups.lab_dirs(name + "."))):
            assert time.monotonic() < deadline, "the harness never started a host"
            assert killed.poll() is None, "the harness ended before it could be killed"
            time.sleep(0.05)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert _leftovers(name), "the killed run should have left something to clean up"

    spec = {"lab": name, "hosts": ["n1", {"name": "n2", "devices": ["tun"]}]}
    second = lab_factory(spec)
    assert second.ssh("n1", "systemctl is-system-running").stdout.strip() == "running"

    # up again with the same spec keeps the running hosts (a re-run of make lab)
    again = lab.up(parse(spec), log=lambda _msg: None)
    assert [h["leader_pid"] for h in again["hosts"]] == [h["leader_pid"] for h in second.state["hosts"]]
    # one with a part gone (here the apt relay) is rebuilt, not kept
    os.kill(again["relay_pid"], signal.SIGKILL)
    assert wait_gone([again["relay_pid"]], 10) == []
    rebuilt = lab.up(parse(spec), log=lambda _msg: None)
    assert rebuilt["relay_pid"] != again["relay_pid"]
    assert not set(h["leader_pid"] for h in rebuilt["hosts"]) & set(h["leader_pid"] for h in again["hosts"])

    lab.down(name, log=lambda _msg: None)
    assert _leftovers(name) == {}


def test_a_bad_spec_fails_before_anything_is_made():
    with pytest.raises(Exception, match="hosts\\[0\\].devices"):
        parse({"lab": "it-bad", "hosts": [{"name": "a", "devices": ["gpu"]}]})
    assert _leftovers("it-bad") == {}
