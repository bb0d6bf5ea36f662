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

import badinput

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NAME = "kvmt1"
LIVE = "kvmt-live"
NVRAM = "kvmt-nv"
BRIDGE = "br-kvmt"
BRIDGE2 = "br-kvmt2"
BATCH = tuple("kvmt-b%d" % index for index in range(5))


@pytest.fixture(scope="module")
def host(hypervisor):
    """The session's hypervisor lab host (libvirt and the module's bindings), with a bridge of this test's."""
    hypervisor.bridge(BRIDGE)
    hypervisor.bridge(BRIDGE2)
    yield hypervisor
    for name in (NAME, LIVE, NVRAM, NVRAM + "-b", "kvmt-bad") + BATCH:
        hypervisor.run("virsh -q destroy %s; virsh -q undefine --nvram %s" % (name, name), check=False)
        hypervisor.run("rm -rf %s" % hypervisor.guest_dir(name), check=False)
    hypervisor.run("ip link del %s; ip link del %s" % (BRIDGE, BRIDGE2), check=False)


@pytest.fixture(scope="module")
def guest(host):
    """The busybox guest's files in the host."""
    built = images.busybox(lab.cache_dir(), log=lambda _msg: None)
    home = host.guest_dir(NAME)
    return {"kernel": host.copy_in(built["kernel"], home + "/vmlinuz"),
            "initrd": host.copy_in(built["initrd"], home + "/initrd.img"),
            "cmdline": built["cmdline"], "marker": built["marker"], "serial_log": home + "/serial.log",
            "home": home}


def module(host, tmp_path, args, check=False, diff=True, name="kvm_instance"):
    """A module's result on hv1, run by ansible (ad-hoc, results written by the tree callback)."""
    tree = tmp_path / ("tree-%d" % len(list(tmp_path.iterdir())))
    command = [os.path.join(os.path.dirname(sys.executable), "ansible"), "hv1", "-i", host.state["inventory"],
               "-m", "hardway.cloud." + name, "-a", json.dumps(args), "-t", str(tree)]
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


def test_a_batch_is_planned_whole_then_converged_in_order(host, guest, tmp_path):
    top = {"state": "running", "virt_type": "qemu", "memory": 128, "kernel": guest["kernel"],
           "initrd": guest["initrd"], "cmdline": guest["cmdline"], "shutdown_timeout": 0, "autostart": True}
    entries = [{"name": name, "interfaces": [{"bridge": BRIDGE}], "serial_log": "%s/%s.log" % (guest["home"], name)}
               for name in BATCH[:3]]

    # a missing bridge in the last entry: the task fails naming it, and none is defined
    nowhere = dict(entries[2], interfaces=[{"bridge": "br-nowhere"}])
    bad = module(host, tmp_path, dict(top, instances=entries[:2] + [nowhere]))
    assert bad.get("failed") and not bad.get("changed"), bad
    assert bad["parameter"] == "instances[2].interfaces[0].bridge" and bad["failed_entry"] == 2, bad
    assert not set(BATCH) & set(defined(host))

    made = module(host, tmp_path, dict(top, instances=entries))
    assert made["changed"] and not made.get("failed"), made
    assert [entry["name"] for entry in made["instances"]] == list(BATCH[:3])
    assert all(entry["state"] == "running" and entry["autostart"] for entry in made["instances"]), made
    for name in BATCH[:3]:
        assert virsh(host, "domstate", name).strip() == "running"
    again = module(host, tmp_path, dict(top, instances=entries))
    assert not again["changed"] and again["diff_lines"] == [], again

    # a failure while converging (QEMU cannot load a file that is no kernel): the entries before it are done,
    # the failed one as far as it got, the ones after it untouched
    host.run("head -c 4096 /dev/zero > %s/not-a-kernel" % guest["home"])
    later = [{"name": BATCH[3], "serial_log": "%s/%s.log" % (guest["home"], BATCH[3])},
             {"name": BATCH[4], "kernel": guest["home"] + "/not-a-kernel"}, {"name": BATCH[0], "memory": 160}]
    failed = module(host, tmp_path, dict(top, instances=later))
    assert failed.get("failed") and failed["changed"] and failed["failed_entry"] == 1, failed
    assert failed["msg"].startswith("instances[1] (%s): " % BATCH[4]), failed["msg"]
    assert [entry["name"] for entry in failed["instances"]] == [BATCH[3], BATCH[4]]
    assert failed["instances"][1]["failed"] and failed["instances"][1]["actions"][0] == "define " + BATCH[4]
    assert virsh(host, "domstate", BATCH[3]).strip() == "running"
    assert virsh(host, "domstate", BATCH[4]).strip() == "shut off"
    assert inactive(host, BATCH[0]).find("memory").text == str(128 * 1024)

    gone = module(host, tmp_path, {"instances": list(BATCH), "state": "absent"})
    assert gone["changed"] and [entry["state"] for entry in gone["instances"]] == ["absent"] * 5, gone
    assert not set(BATCH) & set(defined(host))


def test_a_generated_corpus_of_bad_input_is_refused_naming_the_parameter(host, guest, tmp_path):
    """Every case in one playbook run on the host (a task looped over the
    cases, failures kept), the host's domains and their definitions compared
    before and after."""
    valid = {"name": "kvmt-corpus", "state": "running", "virt_type": "qemu", "memory": 128, "vcpus": 1,
             "kernel": guest["kernel"], "initrd": guest["initrd"], "cmdline": guest["cmdline"],
             "interfaces": [{"bridge": BRIDGE, "prefix": "2001:db8:7f::/64"}],
             "disks": [{"path": guest["initrd"], "readonly": True}], "metadata": {"tenant": "acme"},
             "shutdown_timeout": 0}
    bad = {"memory": [0, -1, "10X", "1.5.5G", "512MB", [128]], "vcpus": [0, -1, 100000],
           "interfaces[].mac": ["zz:00:00:00:00:01", "01:00:00:00:00:01", "02:00:00:00:00", "02-00-00-00-00-01"],
           "interfaces[].prefix": ["2001:db8::/48", "10.0.0.0/24", "zz::/64", "2001:db8::1/64"],
           "disks[].path": ["relative.img", "/no/such/disk.img"], "disks[].boot_order": [0, -1],
           "kernel": ["/no/such/kernel", "vmlinuz"], "shutdown_timeout": [-1], "wait_timeout": [-1],
           "serial_log": ["serial.log"], "cmdline": ["a\x00b", "a\x1bb"], "name": ["-a", ".a", "a/b", "a:b"]}
    cases = badinput.corpus(badinput.argument_spec("kvm_instance"), valid,
                            names=("name", "interfaces[].bridge", "interfaces[].mac", "interfaces[].prefix",
                                   "cpu_model"),
                            skip=("uri",), bad=bad)
    cases += [("instances[0]: " + label, {"instances": [args], "shutdown_timeout": 0}, "instances[0]." + parameter)
              for label, args, parameter in badinput.corpus(badinput.load("kvm_instance").INSTANCE_OPTIONS,
                                                            valid, names=("name", "interfaces[].bridge"), bad=bad)]
    assert len(cases) >= 200

    def snapshot():
        return [(name, virsh(host, "dumpxml", "--inactive", name)) for name in sorted(defined(host))]

    before = snapshot()
    results = loop_module(host, tmp_path, [args for _label, args, _parameter in cases])
    outcomes = iter(results)
    found = badinput.problems(cases, lambda _args: next(outcomes), lambda: None)
    assert not found, "\n".join(found)
    assert snapshot() == before


def test_a_hung_libvirtd_fails_the_run_after_the_timeout_and_a_rerun_converges(host, tmp_path):
    """A fault: libvirtd hangs (stopped with SIGSTOP). The run fails naming
    uri after the module's timeout instead of waiting for ever (module()
    gives up on ansible after 300 s); once libvirtd answers again, a re-run
    converges."""
    host.run("systemctl start libvirtd")
    pid = int(host.run("systemctl show -p MainPID --value libvirtd").stdout.strip())
    assert pid > 1
    host.run("kill -STOP %d" % pid)
    try:
        result = module(host, tmp_path, {"name": "kvmt-hung", "state": "absent", "timeout": 3})
    finally:
        host.run("kill -CONT %d" % pid)
    assert result["failed"] and result.get("parameter") == "uri", result
    assert "did not answer within 3 s" in result["msg"], result
    result = module(host, tmp_path, {"name": "kvmt-hung", "state": "absent", "timeout": 3})
    assert not result["failed"] and not result["changed"], result


def loop_module(host, tmp_path, cases, name="kvm_instance"):
    """The results of a module run on hv1 once for each argument set of
    ``cases``, in one playbook run (failures kept)."""
    playbook, out = tmp_path / "loop.yml", tmp_path / "results.json"
    playbook.write_text(json.dumps([{"hosts": "hv1", "gather_facts": False, "tasks": [
        {"name": "each case", "hardway.cloud." + name: "{{ item }}", "loop": "{{ cases }}",
         "loop_control": {"label": "{{ ansible_loop.index0 }}", "extended": True}, "ignore_errors": True,
         "register": "out"},
        {"name": "keep the results", "ansible.builtin.copy": {"content": "{{ out.results | to_json }}",
                                                              "dest": str(out)},
         "delegate_to": "localhost"}]}]))
    (tmp_path / "cases.json").write_text(json.dumps({"cases": cases}))
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", host.state["inventory"],
               str(playbook), "-e", "@%s" % (tmp_path / "cases.json")]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".tmp", "collections"),
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, check=False)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert len(results) == len(cases)
    return results


def live(host, name):
    return ElementTree.fromstring(virsh(host, "dumpxml", name))


def bridges_of(xml):
    return [element.get("bridge") for element in xml.findall("devices/interface/source")]


def disks_of(xml):
    return [element.get("file") for element in xml.findall("devices/disk/source")]


def test_changes_to_a_running_guest_are_applied_live_where_libvirt_can(host, guest, tmp_path):
    extra = host.guest_dir(LIVE) + "/extra.raw"
    host.run("mkdir -p %s && truncate -s 16M %s" % (host.guest_dir(LIVE), extra))
    args = {"name": LIVE, "state": "running", "virt_type": "qemu", "memory": 256, "kernel": guest["kernel"],
            "initrd": guest["initrd"], "cmdline": guest["cmdline"], "interfaces": [{"bridge": BRIDGE}],
            "serial_log": host.guest_dir(LIVE) + "/serial.log", "shutdown_timeout": 0}
    first = module(host, tmp_path, args)
    assert first["changed"] and first["state"] == "running", first
    Domain(host, LIVE, "", args["serial_log"]).wait_console(guest["marker"] + ".*", timeout=180)

    grown = dict(args, interfaces=[{"bridge": BRIDGE}, {"bridge": BRIDGE2}], disks=[{"path": extra}])
    checked = module(host, tmp_path, grown, check=True)
    assert checked["actions"] == ["redefine %s" % LIVE, "attach disk 0 to running %s" % LIVE,
                                  "attach interface 1 to running %s" % LIVE], checked
    assert not checked["needs_restart"] and bridges_of(live(host, LIVE)) == [BRIDGE]
    plugged = module(host, tmp_path, grown)
    assert plugged["actions"] == checked["actions"] and not plugged["needs_restart"], plugged
    assert bridges_of(live(host, LIVE)) == [BRIDGE, BRIDGE2] and disks_of(live(host, LIVE)) == [extra]
    assert bridges_of(inactive(host, LIVE)) == [BRIDGE, BRIDGE2]
    assert plugged["interfaces"][0] == first["interfaces"][0]
    assert "vnet" in host.run("ip -o link show master %s" % BRIDGE2).stdout
    assert not module(host, tmp_path, grown)["changed"]

    moved = module(host, tmp_path, dict(grown, interfaces=[{"bridge": BRIDGE}, {"bridge": BRIDGE}]))
    assert moved["actions"] == ["redefine %s" % LIVE, "move interface 1 of running %s to %s" % (LIVE, BRIDGE)], moved
    assert bridges_of(live(host, LIVE)) == [BRIDGE, BRIDGE] and not moved["needs_restart"]
    assert moved["interfaces"][1]["mac"] == plugged["interfaces"][1]["mac"]

    # unplugging needs the guest's part (ACPI hot-plug in its kernel)
    shrunk = module(host, tmp_path, dict(args, disks=[]))
    assert shrunk["actions"] == ["redefine %s" % LIVE, "detach disk 0 from running %s" % LIVE,
                                 "detach interface 1 from running %s" % LIVE], shrunk
    assert bridges_of(inactive(host, LIVE)) == [BRIDGE] and disks_of(inactive(host, LIVE)) == []
    assert not shrunk["needs_restart"], shrunk
    assert bridges_of(live(host, LIVE)) == [BRIDGE] and disks_of(live(host, LIVE)) == []

    # what libvirt cannot change live waits for a restart, or is restarted with apply=restart
    cpu = module(host, tmp_path, dict(args, cpu_model="qemu64", memory=288))
    assert cpu["needs_restart"] and cpu["actions"] == ["redefine %s" % LIVE], cpu
    planned = module(host, tmp_path, dict(args, cpu_model="qemu64", memory=288, apply="restart"), check=True)
    assert planned["actions"] == ["turn off %s" % LIVE, "start %s" % LIVE] and not planned["needs_restart"], planned
    restarted = module(host, tmp_path, dict(args, cpu_model="qemu64", memory=288, apply="restart"))
    assert restarted["actions"] == planned["actions"] and not restarted["needs_restart"], restarted
    assert live(host, LIVE).find("cpu/model").text == "qemu64"
    assert not module(host, tmp_path, dict(args, cpu_model="qemu64", memory=288, apply="restart"))["changed"]


@pytest.mark.parametrize("model, message", [("host-passthrough", "not supported"), ("NoSuchCPU", "not a CPU model")])
def test_a_cpu_model_the_host_cannot_give_is_refused(host, guest, tmp_path, model, message):
    result = module(host, tmp_path, {"name": "kvmt-bad", "virt_type": "qemu", "cpu_model": model,
                                     "kernel": guest["kernel"]})
    assert result.get("failed") and result["parameter"] == "cpu_model" and message in result["msg"], result
    assert "kvmt-bad" not in defined(host)


NVRAM_XML = """<domain type='qemu'>
  <name>%(name)s</name>
  <memory unit='MiB'>128</memory>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>%(home)s/code.fd</loader>
    <nvram>%(home)s/%(name)s-vars.fd</nvram>
  </os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='%(disk)s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
"""


def test_absent_removes_nvram_and_with_undefine_volumes_the_disks_no_other_vm_uses(host, tmp_path):
    home = host.guest_dir(NVRAM)
    own, shared = home + "/own.raw", home + "/shared.raw"
    host.run("mkdir -p {0} && truncate -s 1M {0}/code.fd {0}/{3}-vars.fd {0}/{3}-b-vars.fd {1} {2}"
             .format(home, own, shared, NVRAM))
    for name, disk in ((NVRAM, own), (NVRAM + "-b", shared)):
        host.write("%s/%s.xml" % (home, name), NVRAM_XML % {"name": name, "home": home, "disk": disk})
        virsh(host, "define", "%s/%s.xml" % (home, name))
    # the first VM has both disks, the second one uses the shared one too
    module(host, tmp_path, {"name": NVRAM, "disks": [{"path": own}, {"path": shared}]})
    # without NVRAM removal libvirt refuses to undefine such a VM
    refused = host.run("virsh undefine %s" % NVRAM, check=False)
    assert refused.returncode != 0 and "nvram" in refused.stderr.lower(), refused.stderr

    checked = module(host, tmp_path, {"name": NVRAM, "state": "absent", "undefine_volumes": True}, check=True)
    assert checked["actions"] == ["keep %s: another VM uses it" % shared, "undefine %s" % NVRAM,
                                  "remove volume %s" % own], checked
    assert NVRAM in defined(host) and host.run("test -f %s" % own, check=False).returncode == 0
    gone = module(host, tmp_path, {"name": NVRAM, "state": "absent", "undefine_volumes": True})
    assert gone["actions"] == checked["actions"], gone
    assert NVRAM not in defined(host)
    assert host.run("test -e %s/%s-vars.fd || test -e %s" % (home, NVRAM, own), check=False).returncode != 0
    assert host.run("test -f %s" % shared, check=False).returncode == 0

    # without undefine_volumes the disks stay
    kept = module(host, tmp_path, {"name": NVRAM + "-b", "state": "absent"})
    assert kept["actions"] == ["undefine %s-b" % NVRAM] and host.run("test -f %s" % shared).returncode == 0
