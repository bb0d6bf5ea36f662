"""hardway.cloud.kvm_instance against a real libvirt in a lab host: Ansible
runs the module on the host over ssh (as in production, with the host's
/usr/bin/python3 and python3-libvirt); a busybox guest boots under TCG by
direct kernel boot and proves it on its serial log."""

import json
import os
import re
import shlex
import subprocess
import sys
from xml.etree import ElementTree

import pytest

from labhosts import images, lab
from virt import Domain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NAME = "kvmt1"
BRIDGE = "br-kvmt"


@pytest.fixture(scope="module")
def host(hypervisor):
    """The session's hypervisor lab host (libvirt and the module's bindings), with a bridge of this test's."""
    hypervisor.bridge(BRIDGE)
    yield hypervisor
    for name in (NAME, "kvmt-bad"):
        hypervisor.run("virsh -q destroy %s; virsh -q undefine --nvram %s" % (name, name), check=False)
    hypervisor.run("ip link del %s" % BRIDGE, check=False)


@pytest.fixture(scope="module")
def guest(host):
    """The busybox guest's files in the host."""
    built = images.busybox(lab.cache_dir(), log=lambda _msg: None)
    home = host.guest_dir(NAME)
    return {"kernel": host.copy_in(built["kernel"], home + "/vmlinuz"),
            "initrd": host.copy_in(built["initrd"], home + "/initrd.img"),
            "cmdline": built["cmdline"], "marker": built["marker"], "serial_log": home + "/serial.log",
            "home": home}


def module(host, tmp_path, args, check=False, diff=True):
    """The module's result on hv1, run by ansible (ad-hoc, results written by the tree callback)."""
    tree = tmp_path / ("tree-%d" % len(list(tmp_path.iterdir())))
    command = [os.path.join(os.path.dirname(sys.executable), "ansible"), "hv1", "-i", host.state["inventory"],
               "-m", "hardway.cloud.kvm_instance", "-a", json.dumps(args), "-t", str(tree)]
    command += ["--check"] if check else []
    command += ["--diff"] if diff else []
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".tmp", "collections"),
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    try:
        with open(tree / "hv1", encoding="utf-8") as src:
            result = json.load(src)
    except (OSError, ValueError):
        raise AssertionError("no result (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    # the tree callback leaves out "failed"; ansible's exit status says it
    result.setdefault("failed", proc.returncode != 0)
    # nor the diff: the changed lines as the default callback prints them
    result["diff_lines"] = [line for line in proc.stdout.splitlines()
                            if line and line[0] in "+-" and not line.startswith(("---", "+++"))]
    return result


def virsh(host, *args):
    return host.run("virsh -q " + " ".join(shlex.quote(arg) for arg in args)).stdout


def defined(host):
    return virsh(host, "list", "--all", "--name").split()


def inactive(host, name=NAME):
    return ElementTree.fromstring(virsh(host, "dumpxml", "--inactive", name))


def test_lifecycle_of_a_busybox_guest(host, guest, tmp_path):
    args = {"name": NAME, "state": "running", "virt_type": "qemu", "vcpus": 1, "memory": "256M",
            "kernel": guest["kernel"], "initrd": guest["initrd"],
            "cmdline": guest["cmdline"] + " hardway.addr=2001:db8:7f::10/64",
            "interfaces": [{"bridge": BRIDGE, "prefix": "2001:db8:7f::/64"}], "serial_log": guest["serial_log"],
            "metadata": {"tenant": "acme", "flavor": "tiny"}, "shutdown_timeout": 3}
    domain = Domain(host, NAME, "", guest["serial_log"])

    first = module(host, tmp_path, args)
    assert first["changed"] and not first.get("failed"), first
    assert first["state"] == "running" and first["uuid"] and not first["needs_restart"]
    mac = first["interfaces"][0]["mac"]
    assert re.match(r"^02(:[0-9a-f]{2}){5}$", mac) and first["interfaces"][0]["bridge"] == BRIDGE
    assert first["interfaces"][0]["address"].startswith("2001:db8:7f:0:")
    assert inactive(host).get("type") == "qemu"
    line = domain.wait_console(guest["marker"] + ".*", timeout=180).group(0)
    assert "mac=" + mac in line, line
    # the tap device is libvirt's, on the bridge
    assert "vnet" in host.run("ip -o link show master %s" % BRIDGE).stdout

    again = module(host, tmp_path, args)
    assert not again["changed"] and again["actions"] == [] and again["interfaces"] == first["interfaces"], again
    assert again["uuid"] == first["uuid"]
    assert again["diff_lines"] == []

    checked = module(host, tmp_path, dict(args, memory=320, vcpus=2), check=True)
    assert checked["changed"] and checked["actions"] == ["redefine %s" % NAME], checked
    assert inactive(host).find("memory").text == str(256 * 1024)

    bigger = module(host, tmp_path, dict(args, memory=320, vcpus=2))
    assert bigger["changed"] and bigger["needs_restart"], bigger
    # the diff is the owned part only: memory and vcpus, none of libvirt's additions
    assert sorted(line.strip() for line in bigger["diff_lines"]) == sorted([
        '-  <memory unit="MiB">256</memory>', '+  <memory unit="MiB">320</memory>',
        "-  <vcpu>1</vcpu>", "+  <vcpu>2</vcpu>"]), bigger["diff_lines"]
    assert inactive(host).find("memory").text == str(320 * 1024) and inactive(host).find("vcpu").text == "2"
    live = ElementTree.fromstring(virsh(host, "dumpxml", NAME))
    assert live.find("memory").text == str(256 * 1024)
    assert json.loads(inactive(host).find("metadata/{https://hardway.cloud/xmlns/instance/1}instance").text) == \
        {"tenant": "acme", "flavor": "tiny"}

    still = module(host, tmp_path, dict(args, memory=320, vcpus=2))
    assert not still["changed"] and still["needs_restart"], still

    # busybox has no ACPI daemon: the graceful shutdown times out, then it is turned off
    restarted = module(host, tmp_path, dict(args, memory=320, vcpus=2, state="restarted"))
    assert restarted["changed"] and not restarted["needs_restart"] and restarted["state"] == "running", restarted
    assert ElementTree.fromstring(virsh(host, "dumpxml", NAME)).find("memory").text == str(320 * 1024)
    domain.wait_console("(?s)(%s.*){2}" % re.escape(guest["marker"]), timeout=180)

    stopped = module(host, tmp_path, {"name": NAME, "state": "stopped", "shutdown_timeout": 2})
    assert stopped["changed"] and stopped["state"] == "stopped", stopped
    assert virsh(host, "domstate", NAME).strip() == "shut off"
    assert not module(host, tmp_path, {"name": NAME, "state": "stopped"})["changed"]

    started = module(host, tmp_path, {"name": NAME, "state": "running"})
    assert started["actions"] == ["start %s" % NAME] and started["state"] == "running", started

    gone = module(host, tmp_path, {"name": NAME, "state": "absent"})
    assert gone["changed"] and gone["actions"] == ["turn off %s" % NAME, "undefine %s" % NAME], gone
    assert NAME not in defined(host)
    assert not module(host, tmp_path, {"name": NAME, "state": "absent"})["changed"]


@pytest.mark.parametrize("change, parameter", [
    ({"interfaces": [{"bridge": "br-nowhere"}]}, "interfaces[0].bridge"),
    ({"disks": [{"path": "/var/lib/libvirt/images/missing.qcow2", "format": "qcow2"}]}, "disks[0].path"),
    ({"interfaces": [{"bridge": BRIDGE, "mac": "52:54:00:zz:00:01"}]}, "interfaces[0].mac"),
    ({"memory": -256}, "memory"),
    ({"vcpus": "two"}, "vcpus"),
])
def test_bad_inputs_fail_naming_the_parameter_and_define_nothing(host, guest, tmp_path, change, parameter):
    args = dict({"name": "kvmt-bad", "state": "running", "virt_type": "qemu", "memory": 128,
                 "kernel": guest["kernel"], "initrd": guest["initrd"], "interfaces": [{"bridge": BRIDGE}]}, **change)
    result = module(host, tmp_path, args)
    assert result.get("failed") and not result.get("changed"), result
    assert result["parameter"] == parameter and parameter in result["msg"], result
    assert "kvmt-bad" not in defined(host)
