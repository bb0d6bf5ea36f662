"""haproxy_frontend against a real HAProxy (master-worker, started by the
tests) on loopback, with real HTTP servers behind it."""

import os
import re
import signal
import socket
import subprocess

import pytest

from haproxy_lab import Backend, Haproxy, Load, free_port, get, until, wait_serving
from module_runner import run_module

import badinput

OTHER = """# hand-written, not ours: must survive every change byte for byte
frontend other
    bind [::1]:{port}
    default_backend other
backend other
    server o [::1]:{backend}
"""


@pytest.fixture(scope="module")
def backends():
    made = [Backend("b%d" % i) for i in range(4)]
    yield made
    for backend in made:
        backend.close()


@pytest.fixture
def proxy(tmp_path, backends):
    haproxy = Haproxy(str(tmp_path))
    with open(os.path.join(haproxy.conf_d, "10-other.cfg"), "w") as handle:
        handle.write(OTHER.format(port=free_port(), backend=backends[3].port))
    haproxy.cli("reload")
    assert until(lambda: haproxy._started() and haproxy.reloads() == 1)
    yield haproxy
    haproxy.close()


def web(backends, port, *names, **extra):
    servers = [{"name": backend.server.label, "address": "::1", "port": backend.port}
               for backend in backends if backend.server.label in names]
    args = {"name": "web", "bind": ["[::1]:%d" % port], "servers": servers,
            "health_check": {"interval": 200, "rise": 1, "fall": 1}}
    args.update(extra)
    return args


def test_create_serves_and_is_idempotent(proxy, backends):
    port = free_port()
    other = proxy.files()["10-other.cfg"]
    result = proxy.run(**web(backends, port, "b0", "b1"))
    assert result["changed"] and result["reloaded"], result
    assert result["file"].endswith("/conf.d/50-web.cfg")
    assert "server b0 [::1]:%d check weight 1" % backends[0].port in result["content"]
    assert result["server_states"] == {"b0": "ready", "b1": "ready"}
    wait_serving(port)
    bodies = set(get(port)[1] for _attempt in range(6))
    assert bodies == {"b0", "b1"}
    assert proxy.files()["10-other.cfg"] == other
    reloads = proxy.reloads()
    again = proxy.run(**web(backends, port, "b0", "b1"))
    assert not again["changed"] and not again["reloaded"], again
    assert "diff" not in again or all(d["before"] == d["after"] for d in again["diff"])
    assert proxy.reloads() == reloads


def test_check_mode_changes_nothing_and_diff_shows_the_file(proxy, backends):
    port = free_port()
    reloads = proxy.reloads()
    result = proxy.run(check=True, **web(backends, port, "b0", "b1"))
    assert result["changed"], result
    assert result["diff"][0]["before"] == ""
    assert "frontend web\n" in result["diff"][0]["after"]
    assert result["diff"][0]["after_header"].endswith("50-web.cfg")
    assert "50-web.cfg" not in proxy.files()
    assert proxy.reloads() == reloads
    proxy.run(**web(backends, port, "b0", "b1"))
    changed = proxy.run(check=True, **web(backends, port, "b0", "b2", balance="leastconn"))
    assert changed["changed"]
    assert "-    server b1" not in changed["diff"][0]["before"]
    assert "server b1" in changed["diff"][0]["before"] and "server b2" in changed["diff"][0]["after"]
    assert "balance leastconn" in changed["diff"][0]["after"]
    assert "server b1" in proxy.files()["50-web.cfg"]
    # a server state in check mode: predicted, not set
    drained = proxy.run(check=True, **web(backends, port, "b0", "b1",
                                          servers=[{"name": "b0", "address": "::1", "port": backends[0].port,
                                                    "state": "drain"}]))
    assert drained["changed"]


def test_runtime_states_without_reload_and_kept_across_reloads(proxy, backends):
    port = free_port()
    servers = [{"name": b.server.label, "address": "::1", "port": b.port} for b in backends[:2]]
    proxy.run(**web(backends, port, servers=servers))
    wait_serving(port)
    reloads = proxy.reloads()
    servers[0]["state"] = "drain"
    result = proxy.run(**web(backends, port, servers=servers))
    assert result["changed"] and not result["reloaded"], result
    assert result["server_states"] == {"b0": "drain", "b1": "ready"}
    assert result["diff"][-1]["before"] == "b0: ready\n" and result["diff"][-1]["after"] == "b0: drain\n"
    assert proxy.reloads() == reloads
    assert set(get(port)[1] for _attempt in range(6)) == {"b1"}
    assert not proxy.run(**web(backends, port, servers=servers))["changed"]
    # another frontend's change reloads HAProxy; the drained server stays drained
    proxy.run(name="api", bind=["[::1]:%d" % free_port()], servers=[])
    assert proxy.reloads() == reloads + 1
    again = proxy.run(**web(backends, port, servers=servers))
    assert not again["changed"], again
    servers[0]["state"], servers[1]["state"] = "ready", "maint"
    result = proxy.run(**web(backends, port, servers=servers))
    assert result["server_states"] == {"b0": "ready", "b1": "maint"}
    assert set(get(port)[1] for _attempt in range(6)) == {"b0"}


def test_haproxy_rejects_a_change_and_the_live_file_stays(proxy, backends):
    port = free_port()
    proxy.run(**web(backends, port, "b0"))
    wait_serving(port)
    before, reloads = proxy.files(), proxy.reloads()
    result = proxy.run(**web(backends, port, "b0", frontend_options=["http-request frobnicate"]))
    assert result.get("failed") and "haproxy rejected" in result["msg"], result
    assert "frobnicate" in result["msg"] and "50-web.cfg" in result["msg"]
    assert proxy.files() == before and proxy.reloads() == reloads
    assert not [f for f in os.listdir(proxy.conf_d) if f.startswith(".")]
    assert get(port) == (200, "b0")


def test_failed_reload_is_rolled_back_and_the_old_worker_keeps_serving(proxy, backends):
    port = free_port()
    proxy.run(**web(backends, port, "b0"))
    wait_serving(port)
    before = proxy.files()
    # a bind through the escape hatch is not probed; haproxy -c accepts a foreign
    # address, only the new worker's bind fails
    result = proxy.run(**web(backends, port, "b0", frontend_options=["bind [2001:db8::99]:8080"]))
    assert result.get("failed") and "failed to load" in result["msg"], result
    assert "put back" in result["msg"] and not result["changed"]
    assert proxy.files() == before
    assert "failed: 0" in proxy.cli("show proc")
    assert get(port) == (200, "b0")


def test_a_port_held_by_another_program_is_refused_before_writing(proxy, backends):
    port = free_port()
    proxy.run(**web(backends, port, "b0"))
    wait_serving(port)
    before, reloads = proxy.files(), proxy.reloads()
    held = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    busy = free_port()
    held.bind(("::1", busy))
    held.listen()
    try:
        load = Load(port, clients=2)
        result = proxy.run(**web(backends, port, "b0", bind=["[::1]:%d" % port, "[::1]:%d" % busy]))
        load.stop()
    finally:
        held.close()
    assert result.get("failed") and result["parameter"] == "bind[1]", result
    assert "another program listens there" in result["msg"]
    assert proxy.files() == before and proxy.reloads() == reloads
    assert load.failures == [] and load.ok > 0


def test_bind_on_an_address_of_another_host_is_refused_before_writing(proxy, backends):
    before, reloads = proxy.files(), proxy.reloads()
    result = proxy.run(**web(backends, 80, "b0", bind=["[2001:db8::99]:8080"]))
    assert result.get("failed") and result["parameter"] == "bind[0]", result
    assert "Cannot assign requested address" in result["msg"]
    assert not result["changed"]
    assert proxy.files() == before and proxy.reloads() == reloads


def test_absent_removes_only_its_file(proxy, backends):
    port = free_port()
    proxy.run(**web(backends, port, "b0"))
    other = proxy.files()["10-other.cfg"]
    check = proxy.run(check=True, name="web", state="absent")
    assert check["changed"] and "50-web.cfg" in proxy.files()
    result = proxy.run(name="web", state="absent")
    assert result["changed"] and result["reloaded"], result
    assert result["diff"][0]["after"] == "" and "frontend web" in result["diff"][0]["before"]
    assert proxy.files() == {"10-other.cfg": other}
    assert until(lambda: _refused(port))
    again = proxy.run(name="web", state="absent")
    assert not again["changed"] and not again["reloaded"]


def _refused(port):
    try:
        get(port, timeout=1)
    except OSError:
        return True
    return False


def test_zero_failed_requests_while_servers_and_the_frontend_change(proxy, backends):
    port = free_port()
    b0, b1, b2 = [{"name": b.server.label, "address": "::1", "port": b.port} for b in backends[:3]]
    proxy.run(**web(backends, port, servers=[b0]))
    wait_serving(port)
    load = Load(port, clients=4)
    steps = [
        dict(servers=[b0, b1]),                                   # add a server (reload)
        dict(servers=[b0, b1, b2]),                               # and another
        dict(servers=[dict(b0, state="drain"), b1, b2]),          # drain (runtime)
        dict(servers=[b1, b2]),                                   # remove the drained one (reload)
        dict(servers=[b1, dict(b2, state="maint")]),              # maint (runtime)
        dict(servers=[b1, b2], frontend_options=["http-response set-header X-Edge hardway"]),  # frontend change
        dict(servers=[b1, b2], balance="leastconn", backend_options=["timeout server 5s"]),
        dict(servers=[b0, b2]),
    ]
    results = []
    for step in steps:
        results.append(proxy.run(**web(backends, port, **step)))
        until(lambda: load.ok > 0, 2)
    load.stop()
    assert all(r["changed"] and not r.get("failed") for r in results), results
    assert sum(1 for r in results if r["reloaded"]) >= 5
    assert load.failures == [], load.failures[:5]
    assert load.ok >= 200, load.ok
    assert load.bodies <= {"b0", "b1", "b2"} and len(load.bodies) == 3


def _listener_inodes(ports):
    inodes = {}
    for port in ports:
        out = subprocess.run(["ss", "-ltnHe", "sport = :%d" % port], capture_output=True, text=True, check=True).stdout
        inodes[port] = re.findall(r"ino:(\d+)", out)
    return inodes


def test_reloads_hand_every_listening_socket_over(proxy, backends):
    """Seamless means the new worker takes the old one's sockets (same inode):
    a socket bound anew would reset the connections queued on the old one."""
    ports = [free_port() for _port in range(3)]
    binds = ["[::1]:%d" % ports[0], "127.0.0.1:%d" % ports[1], "[::]:%d" % ports[2]]
    proxy.run(**web(backends, ports[0], "b0", bind=binds))
    wait_serving(ports[0])
    before = _listener_inodes(ports)
    assert all(len(found) == 1 for found in before.values()), before
    result = proxy.run(**web(backends, ports[0], "b0", "b1", bind=binds))
    assert result["reloaded"]
    assert _listener_inodes(ports) == before


def test_not_running_writes_the_checked_file_and_warns(tmp_path, backends):
    haproxy = Haproxy(str(tmp_path))
    haproxy.close()
    port = free_port()
    result = haproxy.run(**web(backends, port, "b0"))
    assert result["changed"] and not result["reloaded"], result
    assert any("not running" in str(w) for w in result.get("warnings", []))
    assert "50-web.cfg" in haproxy.files()
    assert not haproxy.run(**web(backends, port, "b0"))["changed"]


@pytest.mark.parametrize("args,parameter", [
    ({"name": "we b"}, "name"),
    ({"bind": ["2001:db8::1:80"]}, "bind[0]"),
    ({"bind": []}, "bind"),
    ({"servers": [{"name": "x", "address": "::1", "port": 70000}]}, "servers[0].port"),
    ({"servers": [{"name": "x", "address": "::1\nbackend evil", "port": 80}]}, "servers[0].address"),
    ({"frontend_options": ["backend evil"]}, "frontend_options"),
    ({"timeout": 0}, "timeout"),
    ({"config": ["/nonexistent/haproxy.cfg"]}, "config"),
])
def test_bad_input_fails_cleanly_and_changes_nothing(proxy, backends, args, parameter):
    before, reloads = proxy.files(), proxy.reloads()
    full = web(backends, free_port(), "b0")
    full.update(args)
    result = proxy.run(**full)
    assert result.get("failed") and result.get("parameter") == parameter, result
    assert not result.get("changed")
    assert proxy.files() == before and proxy.reloads() == reloads


@pytest.mark.parametrize("args,parameter", [
    ({"servers": "nope"}, "servers"),
    ({"servers": [{"name": "a", "address": "::1", "port": 80}, 5]}, "servers[1]"),
    ({"health_check": "fast"}, "health_check"),
])
def test_wrong_types_name_the_parameter(proxy, args, parameter):
    result = proxy.run(name="web", bind=["[::1]:1"], **args)
    assert result.get("failed") and result.get("parameter") == parameter, result
    result = proxy.run(name="web", bind=["[::1]:1"], servers=[{"name": "a", "address": "::1", "port": "eighty"}])
    assert result.get("failed") and "'port'" in result["msg"] and "servers" in result["msg"], result


def test_a_generated_corpus_of_bad_input_is_refused_naming_the_parameter(proxy, backends):
    check = {"interval": 200, "rise": 1, "fall": 1, "http_path": "/health"}
    valid = web(backends, free_port(), "b0", health_check=check)
    cases = badinput.corpus(badinput.argument_spec("haproxy_frontend"), valid,
                            names=("name", "servers[].name", "servers[].address", "bind[]", "health_check.http_path"),
                            bad={"servers[].port": [0, 65536, -1], "servers[].weight": [-1, 257],
                                 "servers[].address": ["2001:db8::zz", "::1/128", " ::1", "ff02::1"],
                                 "bind[]": ["[::1]:0", "[::1]:65536", "[::1]", "2001:db8::zz:80", "[::1]:80 ssl",
                                            "::1:80", {"address": "::1"}, 0],
                                 "health_check.interval": [0, -5], "health_check.rise": [0], "health_check.fall": [0],
                                 "health_check.expect_status": [99, 600], "health_check.http_path": ["health"],
                                 "timeout": [0, -1]})
    assert len(cases) >= 50
    found = badinput.problems(cases, lambda args: proxy.run(**args),
                              lambda: (proxy.files(), proxy.reloads()))
    assert not found, "\n".join(found)


def bodies(port, count=8):
    """The bodies of ``count`` requests through the frontend (the backends' labels)."""
    return set(get(port)[1] for _attempt in range(count))


def test_haproxy_crashed_during_a_run_then_started_again_converges(proxy, backends):
    """A fault: HAProxy is down (killed, its master socket left behind) when
    the module runs. The module writes the validated configuration, says that
    HAProxy is not running, and fails nothing; HAProxy started again serves
    it; a re-run changes nothing."""
    port = free_port()
    assert proxy.run(**web(backends, port, "b0"))["changed"]
    wait_serving(port, "b0")
    proxy.crash()
    assert os.path.exists(proxy.master_socket)
    result = proxy.run(**web(backends, port, "b0", "b1"))
    assert result["changed"] and not result.get("failed"), result
    assert any("not running" in str(warning) for warning in result.get("warnings", [])), result
    proxy.start()
    wait_serving(port)
    assert until(lambda: bodies(port) == {"b0", "b1"}), bodies(port)
    again = proxy.run(**web(backends, port, "b0", "b1"))
    assert not again["changed"] and not again.get("failed"), again


def test_a_hung_haproxy_fails_the_run_within_its_timeout_and_changes_nothing(proxy, backends):
    """A fault: HAProxy's master hangs (stopped). The module fails naming
    HAProxy's master socket after its timeout instead of waiting for ever
    (run_module gives up after 60 s), the configuration stays as it was; once
    HAProxy answers again a re-run converges."""
    port = free_port()
    assert proxy.run(**web(backends, port, "b0"))["changed"]
    before = proxy.files()
    os.kill(proxy.proc.pid, signal.SIGSTOP)
    try:
        result = run_module("haproxy_frontend", proxy.args(timeout=3, **web(backends, port, "b0", "b1")), timeout=60)
    finally:
        os.kill(proxy.proc.pid, signal.SIGCONT)
    assert result.get("failed") and "master socket" in result["msg"] and "did not answer" in result["msg"], result
    assert proxy.files() == before
    result = proxy.run(**web(backends, port, "b0", "b1"))
    assert result["changed"] and result.get("reloaded"), result
    assert until(lambda: bodies(port) == {"b0", "b1"}), bodies(port)
