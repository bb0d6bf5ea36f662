"""RBD clones: ceph_rbd_volume in one Ansible task with the clones as a batch
(volumes) and in one task looped over them, against its peer (an rbd CLI
loop, one process per call, as a shell script does it) and its floor (the rbd
binding calls alone in one Python process), measured in the same run against
the same template snapshot.

Needs a running cluster; the caller brings it up and passes its client files.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERPRETER = "/usr/bin/python3"

# one task on localhost; the clones as a loop over names or as one batch
PLAYBOOK = """- name: Clones of one snapshot
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: One task, %(how)s
      hardway.cloud.ceph_rbd_volume:
        conf: "{{ conf }}"
        keyring: "{{ keyring | default(omit) }}"
        user: "{{ user }}"
        pool: "{{ pool }}"
        source: "{{ source | default(omit) }}"
        state: "{{ state }}"
%(clones)s
"""
PLAYBOOKS = {
    "loop": PLAYBOOK % {"how": "a loop over the clones",
                        "clones": '        name: "{{ item }}"\n      loop: "{{ names }}"'},
    "batch": PLAYBOOK % {"how": "the clones as a batch", "clones": '        volumes: "{{ volumes }}"'},
}

# the floor, run by the same interpreter Ansible runs the module with
FLOOR = """
import json, sys, time
import rados, rbd
args = json.loads(sys.argv[1])
conf = {"keyring": args["keyring"]} if args["keyring"] else {}
cluster = rados.Rados(conffile=args["conf"], rados_id=args["user"], conf=conf)
cluster.connect(timeout=30)
ioctx = cluster.open_ioctx(args["pool"])
images = rbd.RBD()
started = time.monotonic()
for name in args["names"]:
    images.clone(ioctx, args["template"], "base", ioctx, name)
created = time.monotonic()
for name in args["names"]:
    images.remove(ioctx, name)
removed = time.monotonic()
ioctx.close()
cluster.shutdown()
print(json.dumps({"create": created - started, "delete": removed - created}))
"""


def timed(func):
    started = time.monotonic()
    func()
    return time.monotonic() - started


def _rbd(conf, keyring, user):
    argv = ["rbd", "-c", conf, "--id", user]
    return argv + ["-k", keyring] if keyring else argv


def _playbook(tmp, kind, conf, keyring, user, pool, names, state, source=None):
    """ansible-playbook running the ``kind`` playbook (loop or batch) on localhost, ready to be timed."""
    variables = {"conf": conf, "user": user, "pool": pool, "names": names, "state": state,
                 "volumes": [{"name": name} for name in names], "ansible_python_interpreter": INTERPRETER}
    if keyring:
        variables["keyring"] = keyring
    if source:
        variables["source"] = source
    path = os.path.join(tmp, "vars-%s-%s.json" % (kind, state))
    with open(path, "w", encoding="utf-8") as out:
        json.dump(variables, out)
    book = os.path.join(tmp, "clones-%s.yml" % kind)
    with open(book, "w", encoding="utf-8") as out:
        out.write(PLAYBOOKS[kind])
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".tmp", "collections"))
    argv = ["ansible-playbook", "-i", "localhost,", "-e", "@" + path, book]
    return lambda: subprocess.run(argv, env=env, check=True, capture_output=True)


def bench_clones(conf, keyring, user, pool, count=50):
    """Seconds to create ``count`` clones of a protected snapshot and to delete
    them again: through hardway.cloud.ceph_rbd_volume in one task with the
    clones as a batch (volumes) and in one task looped over them
    (ansible-playbook on localhost, Ansible's start included in both), through
    an rbd CLI loop, and through the binding calls alone (connection not
    included). Each way is checked to have made and removed every clone."""
    token = uuid.uuid4().hex[:8]
    template = "bench-template-%s" % token
    names = ["bench-clone-%s-%03d" % (token, index) for index in range(count)]
    source = "%s/%s@base" % (pool, template)
    rbd = _rbd(conf, keyring, user)
    results = {}

    def run(*argv):
        return subprocess.run(rbd + list(argv), check=True, capture_output=True, text=True)

    def check(present):
        listed = set(json.loads(run("ls", "--format", "json", pool).stdout))
        missing = [name for name in names if (name in listed) != present]
        if missing:
            raise AssertionError("%d clones %s, e.g. %s" % (len(missing), "missing" if present else "left",
                                                            missing[0]))

    run("create", "--size", "4M", "%s/%s" % (pool, template))
    run("snap", "create", source)
    run("snap", "protect", source)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("batch", "loop"):
                label = "ansible %s" % ("one task, volumes" if kind == "batch" else "loop")
                results[label + ": create"] = timed(
                    _playbook(tmp, kind, conf, keyring, user, pool, names, "present", source))
                check(True)
                results[label + ": delete"] = timed(_playbook(tmp, kind, conf, keyring, user, pool, names, "absent"))
                check(False)

        results["rbd CLI loop: create"] = timed(
            lambda: [run("clone", source, "%s/%s" % (pool, name)) for name in names])
        check(True)
        results["rbd CLI loop: delete"] = timed(
            lambda: [run("rm", "--no-progress", "%s/%s" % (pool, name)) for name in names])
        check(False)

        floor = subprocess.run([INTERPRETER, "-c", FLOOR, json.dumps({
            "conf": conf, "keyring": keyring, "user": user, "pool": pool, "template": template, "names": names})],
            check=True, capture_output=True, text=True)
        calls = json.loads(floor.stdout)
        results["bindings: create"] = calls["create"]
        results["bindings: delete"] = calls["delete"]
    finally:
        for name in names:
            subprocess.run(rbd + ["rm", "--no-progress", "%s/%s" % (pool, name)], capture_output=True, check=False)
        subprocess.run(rbd + ["snap", "unprotect", source], capture_output=True, check=False)
        subprocess.run(rbd + ["snap", "purge", "%s/%s" % (pool, template)], capture_output=True, check=False)
        subprocess.run(rbd + ["rm", "--no-progress", "%s/%s" % (pool, template)], capture_output=True, check=False)
    return results


if __name__ == "__main__":
    # python -m benchmarks.rbd CONF KEYRING USER POOL [COUNT]
    ARGS = sys.argv[1:]
    print(json.dumps(bench_clones(ARGS[0], ARGS[1] or None, ARGS[2], ARGS[3],
                                  int(ARGS[4]) if len(ARGS) > 4 else 50), indent=2))
