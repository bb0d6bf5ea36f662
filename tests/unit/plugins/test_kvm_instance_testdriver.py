"""kvm_instance against libvirt's test driver (test:///default, no daemon):
the plan and apply code with one connection kept across "runs", and the
module as Ansible runs it for the cases one process shows."""

import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.hardway.cloud.plugins.module_utils import libvirt_domain as logic  # noqa: E402
from ansible_collections.hardway.cloud.plugins.module_utils.base import ModuleError, ParameterError  # noqa: E402
from ansible_collections.hardway.cloud.plugins.modules import kvm_instance  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEFAULTS = {key: spec.get("default") for key, spec in kvm_instance.KvmInstance.argument_spec.items()}
BASE = {"name": "t1", "uri": "test:///default", "state": "running", "virt_type": "qemu", "memory": 256,
        "vcpus": 1, "kernel": "/k", "initrd": "/i", "cmdline": "console=ttyS0", "serial_log": "/tmp/t1.log",
        "interfaces": [{"bridge": "br0"}], "disks": [{"path": "/d.img"}], "metadata": {"tenant": "acme"},
        "shutdown_timeout": 0}


@pytest.fixture
def conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


def run(conn, params, check=False):
    """One module run on ``conn``: the result, with the diff's before and after."""
    full = dict(DEFAULTS)
    full.update(params)
    result = {"changed": False}
    kvm_instance.Instance(conn, logic.wanted(full), full, check, result).converge()
    return result


def inactive(conn, name="t1"):
    return logic.owned(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def test_define_start_and_the_same_again_is_no_change(conn):
    first = run(conn, BASE)
    assert first["changed"] and first["actions"] == ["define t1", "start t1"]
    assert first["state"] == "running" and not first["needs_restart"]
    assert first["interfaces"] == [{"bridge": "br0", "mac": logic.derived_mac("t1", 0)}]
    assert "<domain type='qemu'" in first["xml"] and first["uuid"]
    again = run(conn, BASE)
    assert not again["changed"] and again["actions"] == []
    assert again["uuid"] == first["uuid"] and again["interfaces"] == first["interfaces"]
    assert again["_before"] == again["_after"]


def test_check_mode_changes_nothing(conn):
    plan = run(conn, BASE, check=True)
    assert plan["changed"] and plan["actions"] == ["define t1", "start t1"] and plan["uuid"] is None
    assert "t1" not in conn.listDefinedDomains() + [d.name() for d in conn.listAllDomains()]
    run(conn, BASE)
    plan = run(conn, check=True, params=dict(BASE, memory="1G", state="stopped"))
    assert plan["changed"] and plan["actions"] == ["redefine t1", "turn off t1"] and plan["state"] == "stopped"
    assert inactive(conn)["memory"] == 256
    assert conn.lookupByName("t1").isActive()


def test_a_change_to_a_running_instance_needs_a_restart(conn):
    run(conn, BASE)
    changed = run(conn, dict(BASE, memory="512M", vcpus=2))
    assert changed["changed"] and changed["actions"] == ["redefine t1"] and changed["needs_restart"]
    assert (inactive(conn)["memory"], inactive(conn)["vcpus"]) == (512, 2)
    assert '<memory unit="MiB">256</memory>' in changed["_before"]
    assert '<memory unit="MiB">512</memory>' in changed["_after"]
    assert "uuid" not in changed["_before"] + changed["_after"]
    again = run(conn, dict(BASE, memory="512M", vcpus=2))
    assert not again["changed"] and again["needs_restart"]
    restarted = run(conn, dict(BASE, memory="512M", vcpus=2, state="restarted"))
    assert restarted["changed"] and not restarted["needs_restart"]
    assert restarted["actions"] == ["turn off t1", "start t1"]


def test_metadata_is_read_back_and_applied_live(conn):
    run(conn, BASE)
    changed = run(conn, dict(BASE, metadata={"tenant": "other", "labels": ["a"]}))
    assert changed["changed"] and not changed["needs_restart"]
    assert changed["actions"] == ["redefine t1", "set metadata of running t1"]
    live = conn.lookupByName("t1").metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, logic.METADATA_NS)
    assert json.loads(live[live.index(">") + 1:live.rindex("<")]) == {"labels": ["a"], "tenant": "other"}
    assert inactive(conn)["metadata"] == {"labels": ["a"], "tenant": "other"}


def test_name_and_state_alone_keep_the_definition(conn):
    run(conn, BASE)
    before = inactive(conn)
    stopped = run(conn, dict(name="t1", uri="test:///default", state="stopped", shutdown_timeout=0))
    assert stopped["actions"] == ["turn off t1"] and stopped["state"] == "stopped"
    assert inactive(conn) == before
    assert run(conn, dict(name="t1", uri="test:///default", state="running"))["actions"] == ["start t1"]
    paused = run(conn, dict(name="t1", uri="test:///default", state="paused"))
    assert paused["actions"] == ["pause t1"] and paused["state"] == "paused"
    running = run(conn, dict(name="t1", uri="test:///default", state="running"))
    assert running["actions"] == ["resume t1"] and running["state"] == "running"


def test_autostart(conn):
    run(conn, BASE)
    on = run(conn, dict(BASE, autostart=True))
    assert on["actions"] == ["autostart on t1"] and on["autostart"]
    assert not run(conn, dict(BASE, autostart=True))["changed"]
    assert conn.lookupByName("t1").autostart() == 1


def test_nics_added_keep_the_macs_of_the_ones_before(conn):
    first = run(conn, BASE)
    nics = [{"bridge": "br0"}, {"bridge": "br1", "mac": "52:54:00:00:00:09"}]
    # check mode plans the hot-plug; the test driver cannot do it, so the real
    # run leaves it for the next restart and says so
    plan = run(conn, dict(BASE, interfaces=nics), check=True)
    assert plan["actions"] == ["redefine t1", "attach interface 1 to running t1"] and not plan["needs_restart"]
    more = run(conn, dict(BASE, interfaces=nics))
    assert more["interfaces"][0] == first["interfaces"][0]
    assert more["interfaces"][1] == {"bridge": "br1", "mac": "52:54:00:00:00:09"}
    assert more["actions"][1].startswith("attach interface 1 to running t1: not possible live")
    assert more["needs_restart"]
    assert not run(conn, dict(BASE, interfaces=nics))["changed"]


def test_apply_restart_restarts_when_a_change_needs_it(conn):
    run(conn, BASE)
    plan = run(conn, dict(BASE, memory=512, apply="restart"), check=True)
    assert plan["actions"] == ["redefine t1", "turn off t1", "start t1"] and not plan["needs_restart"]
    done = run(conn, dict(BASE, memory=512, apply="restart"))
    assert done["actions"] == plan["actions"] and not done["needs_restart"] and done["state"] == "running"
    assert not run(conn, dict(BASE, memory=512, apply="restart"))["changed"]
    # metadata alone is applied live: no restart
    live = run(conn, dict(BASE, memory=512, apply="restart", metadata={"tenant": "b"}))
    assert live["actions"] == ["redefine t1", "set metadata of running t1"]


def test_undefine_volumes_is_refused_away_from_the_host(conn):
    run(conn, BASE)
    with pytest.raises(ParameterError) as error:
        run(conn, dict(name="t1", uri="test:///default", state="absent", undefine_volumes=True))
    assert error.value.parameter == "undefine_volumes"
    assert "t1" in [d.name() for d in conn.listAllDomains()]


def test_absent_removes_a_running_instance(conn):
    run(conn, BASE)
    gone = run(conn, dict(name="t1", uri="test:///default", state="absent"))
    assert gone["changed"] and gone["actions"] == ["turn off t1", "undefine t1"] and gone["state"] == "absent"
    assert "t1" not in [d.name() for d in conn.listAllDomains()]
    assert not run(conn, dict(name="t1", uri="test:///default", state="absent"))["changed"]


def test_a_libvirt_error_names_the_parameter(conn):
    full = dict(DEFAULTS, **BASE)
    instance = kvm_instance.Instance(conn, logic.wanted(full), full, False, {"changed": False})

    def start():
        libvirt.virResetLastError()  # else the error takes the last error's message
        raise libvirt.libvirtError("Cannot get interface MTU on 'br0': No such device")
    with pytest.raises(ModuleError) as error:
        instance._do("start t1", start)
    assert error.value.details == {"parameter": "interfaces[0].bridge"}
    assert str(error.value).startswith("interfaces[0].bridge: start t1 failed: Cannot get interface MTU")


def test_bad_inputs_define_nothing(conn):
    with pytest.raises(ParameterError) as error:
        run(conn, dict(BASE, memory=-5))
    assert error.value.parameter == "memory"
    assert "t1" not in [d.name() for d in conn.listAllDomains()]


def module(args, check=False, diff=True):
    """The module as Ansible runs it (a new process, so a new test driver)."""
    payload = dict(args, _ansible_check_mode=check, _ansible_diff=diff,
                   _ansible_tmpdir=tempfile.gettempdir(), _ansible_remote_tmp=tempfile.gettempdir())
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    try:
        proc = subprocess.run([sys.executable, "-m", "ansible_collections.hardway.cloud.plugins.modules.kvm_instance",
                               handle.name], capture_output=True, text=True, timeout=60, check=False,
                              env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".tmp", "collections")))
    finally:
        os.unlink(handle.name)
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_module_defines_and_diffs():
    result = module(BASE)
    assert result["changed"] and result["state"] == "running" and "failed" not in result
    assert result["diff"]["before"] == "" and "<memory unit=\"MiB\">256</memory>" in result["diff"]["after"]


@pytest.mark.parametrize("args, parameter", [
    ({"memory": -5}, "memory"),
    ({"memory": "lots"}, "memory"),
    ({"vcpus": "many"}, "vcpus"),
    ({"interfaces": [{"bridge": "br0", "mac": "01:02:03:04:05:06"}]}, "interfaces[0].mac"),
    ({"interfaces": [{"bridge": "br0"}, {"mac": "02:02:03:04:05:06"}]}, "interfaces[1].bridge"),
    ({"disks": [{"path": "/d.img", "format": "vmdk"}]}, "disks[0].format"),
    ({"state": "gone"}, "state"),
    ({"uri": "bogus:///nowhere"}, "uri"),
])
def test_the_module_fails_naming_the_parameter(args, parameter):
    result = module(dict(BASE, **args))
    assert result.get("failed") and not result.get("changed"), result
    assert result["parameter"] == parameter, result
    assert parameter.split(".")[0].split("[")[0] in result["msg"], result["msg"]


ENTRY = dict((key, value) for key, value in BASE.items() if key not in ("name", "uri", "virt_type", "shutdown_timeout"))


def batch(*entries, **top):
    args = {"uri": "test:///default", "virt_type": "qemu", "shutdown_timeout": 0, "instances": list(entries)}
    args.update(top)
    return args


def test_a_batch_converges_each_entry_over_the_top_level_options():
    result = module(batch(dict(ENTRY, name="b1"), dict(ENTRY, name="b2", memory=512, state="stopped"),
                          "b3", state="running", autostart=True))
    assert result["changed"] and "failed" not in result, result
    names = [entry["name"] for entry in result["instances"]]
    assert names == ["b1", "b2", "b3"]
    first, second, third = result["instances"]
    assert first["actions"] == ["define b1", "autostart on b1", "start b1"] and first["state"] == "running"
    assert second["state"] == "stopped" and "start b2" not in second["actions"] and second["autostart"]
    assert "<memory unit='KiB'>524288</memory>" in second["xml"] and "<memory unit='KiB'>262144</memory>" in first["xml"]
    # just a name: the top level's options and the module's defaults
    assert third["actions"] == ["define b3", "autostart on b3", "start b3"] and "<vcpu" in third["xml"]
    assert result["diff"]["before"].count("<!--") == 0 and result["diff"]["after"].count("<!-- b") == 3
    assert not result["needs_restart"] and "uuid" not in result


def test_a_batch_in_check_mode_plans_every_entry():
    result = module(batch(dict(ENTRY, name="b1"), dict(ENTRY, name="b2")), check=True)
    assert result["changed"] and [entry["uuid"] for entry in result["instances"]] == [None, None]
    assert [entry["actions"] for entry in result["instances"]] == [["define b1", "start b1"], ["define b2", "start b2"]]


@pytest.mark.parametrize("entries, parameter", [
    ([dict(ENTRY, name="b1"), dict(ENTRY, name="b2", memory="lots")], "instances[1].memory"),
    ([dict(ENTRY, name="b1"), dict(ENTRY, name="b1")], "instances[1].name"),
    ([dict(ENTRY, name="b1"), dict(ENTRY, name="b2", uri="test:///default")], "instances[1].uri"),
    ([dict(ENTRY, name="b1"), dict(ENTRY, name="b2", interfaces=[{"bridge": "b"}, {"mac": "x"}])],
     "instances[1].interfaces[1].bridge"),
    ([dict(ENTRY, name="b1"), dict(ENTRY, name="b2", disks=[{"path": "/d", "brus": "x"}])],
     "instances[1].disks[0].brus"),
    ([dict(ENTRY, name="b1"), 5], "instances[1]"),
    ([dict(ENTRY, name="b1"), {"memory": 5}], "instances[1].name"),
    ([dict(ENTRY, name="b1"), dict(ENTRY, name="b 2")], "instances[1].name"),
    ([dict(ENTRY, name="b1"), dict(ENTRY, name="b2", shutdown_timeout=-1)], "instances[1].shutdown_timeout"),
    ([dict(ENTRY, name="b1"), dict(ENTRY, name="b2", state="gone")], "instances[1].state"),
])
def test_a_bad_entry_fails_naming_it_before_anything_is_defined(entries, parameter):
    result = module(batch(*entries))
    assert result.get("failed") and not result.get("changed"), result
    assert result["parameter"] == parameter and result["msg"].startswith(parameter + ":"), result
    assert result["failed_entry"] == 1 and result["instances"] == [], result


def test_a_daemon_that_never_answers_fails_the_run_after_the_timeout(tmp_path):
    """What a hung libvirtd looks like to a client: its socket takes the
    connection and nothing ever answers. The run fails naming uri after
    timeout s (module() gives up on the process after 60 s)."""
    path = str(tmp_path / "hung.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    try:
        result = module(dict(BASE, uri="qemu+unix:///system?socket=" + path, timeout=2))
    finally:
        server.close()
    assert result.get("failed") and result["parameter"] == "uri", result
    assert "did not answer within 2 s" in result["msg"] and not result["changed"], result


def test_a_timeout_below_one_second_is_refused():
    result = module(dict(BASE, timeout=0))
    assert result.get("failed") and result["parameter"] == "timeout" and not result["changed"], result
