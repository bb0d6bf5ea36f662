"""Run a module of the collection directly, the way Ansible runs it on a host,
without a playbook: arguments in, JSON out. Fast enough to call hundreds of
times against the real kernel, radvd or haproxy."""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")


def run_module(name, args, check=False, diff=True, timeout=120):
    """The module's result dict; ``failed`` results are returned, not raised."""
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    payload["_ansible_tmpdir"] = tempfile.gettempdir()
    payload["_ansible_remote_tmp"] = tempfile.gettempdir()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, handle)
    try:
        env = dict(os.environ, PYTHONPATH=COLLECTIONS)
        proc = subprocess.run([sys.executable, "-m", "ansible_collections.hardway.cloud.plugins.modules." + name,
                               handle.name], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    finally:
        os.unlink(handle.name)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError("%s printed no result (rc=%d)\nstdout: %s\nstderr: %s"
                             % (name, proc.returncode, proc.stdout, proc.stderr))
    assert "Traceback" not in proc.stderr, proc.stderr
    result.setdefault("rc_", proc.returncode)
    return result
