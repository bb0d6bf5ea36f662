"""A real HAProxy in master-worker mode on loopback, with its configuration in
a temporary directory, and small HTTP servers that say who they are: what the
haproxy_frontend tests run against."""

import http.client
import http.server
import os
import signal
import socket
import subprocess
import threading
import time

from module_runner import run_module

MAIN_CFG = """global
    master-worker
    stats socket {dir}/admin.sock mode 600 level admin expose-fd listeners
    server-state-file {dir}/server-state
    pidfile {dir}/haproxy.pid

defaults
    mode http
    load-server-state-from-file global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
"""


def free_port():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.bind(("::1", 0))
        return probe.getsockname()[1]


class _Named(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        body = self.server.label.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


class Backend:
    """An HTTP server on [::1]:port answering its label."""

    def __init__(self, label):
        self.server = _Server(("::1", 0), _Named)
        self.server.label = label
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Haproxy:
    """HAProxy started by the test (no service manager), removed at close()."""

    def __init__(self, directory):
        self.dir = directory
        self.conf_d = os.path.join(directory, "conf.d")
        os.makedirs(self.conf_d)
        self.main = os.path.join(directory, "haproxy.cfg")
        with open(self.main, "w") as handle:
            handle.write(MAIN_CFG.format(dir=directory))
        self.master_socket = os.path.join(directory, "master.sock")
        self.proc = self.log = None
        self.start()

    def start(self):
        """Start HAProxy (again, after close() or kill())."""
        self.log = open(os.path.join(self.dir, "haproxy.log"), "a")
        self.proc = subprocess.Popen(["haproxy", "-W", "-S", self.master_socket, "-f", self.main, "-f", self.conf_d],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not until(self._started, 10):
            self.close()
            raise AssertionError("haproxy did not start: %s" % open(self.log.name).read())

    def crash(self):
        """HAProxy killed at once, master and workers, its master socket left behind."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def _started(self):
        try:
            return " worker " in self.cli("show proc")
        except OSError:
            return False

    def args(self, **extra):
        """Module arguments pointing at this HAProxy."""
        args = {"config": [self.main], "config_dir": self.conf_d, "master_socket": self.master_socket}
        args.update(extra)
        return args

    def run(self, check=False, diff=True, **extra):
        return run_module("haproxy_frontend", self.args(**extra), check=check, diff=diff)

    def cli(self, line, sock=None):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(5)
        try:
            conn.connect(sock or self.master_socket)
            conn.sendall((line + "\n").encode())
            conn.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                data = conn.recv(65536)
                if not data:
                    return b"".join(chunks).decode()
                chunks.append(data)
        finally:
            conn.close()

    def reloads(self):
        for line in self.cli("show proc").splitlines():
            if " master " in line:
                return int(line.split()[2])
        raise AssertionError("no master in show proc")

    def worker_pids(self):
        return [int(line.split()[0]) for line in self.cli("show proc").splitlines() if " worker " in line]

    def files(self):
        return {name: open(os.path.join(self.conf_d, name)).read() for name in sorted(os.listdir(self.conf_d))}

    def close(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def get(port, host="::1", timeout=5):
    """(status, body) of GET / through the frontend on a new connection."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_serving(port, expect=None, timeout=10):
    def ok():
        try:
            status, body = get(port)
        except OSError:
            return False
        return status == 200 and (expect is None or body in expect)
    assert until(ok, timeout), "the frontend on port %d does not answer" % port


class Load:
    """Clients sending requests through a frontend until stopped; every answer
    that is not a 200 from one of the backends, and every connection error, is
    a failure."""

    def __init__(self, port, clients=4):
        self.port = port
        self.ok = 0
        self.failures = []
        self.bodies = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _attempt in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self):
        while not self._stop.is_set():
            try:
                status, body = get(self.port)
                outcome = None if status == 200 else "status %d: %s" % (status, body[:80])
            except OSError as exc:
                outcome, body = "%s: %s" % (type(exc).__name__, exc), None
            with self._lock:
                if outcome is None:
                    self.ok += 1
                    self.bodies.add(body)
                else:
                    self.failures.append(outcome)

    def stop(self):
        self._stop.set()
        for thread in self.threads:
            thread.join(10)
        return self


def until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
