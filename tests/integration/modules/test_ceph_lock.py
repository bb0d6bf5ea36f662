"""ceph_lock against a real Ceph cluster (the ``ceph`` fixture): a lease taken,
renewed and released; runs that find it held wait for it or fail naming its
holder; runs that race for it at the same moment (separate processes, as
separate ansible-playbook runs are) get it one at a time and never two at
once; an expired lease is taken over, a live one only broken with force;
check and diff mode; an object that is not a lease; and a generated corpus of
bad input. Every lease a test names is unique and removed afterwards."""

import json
import threading
import time
import types
import uuid

import pytest

from module_runner import run_module
import badinput


class Leases:
    """A unique lease name for one test, the module run against the cluster,
    and the object as the rados CLI sees it. Removes the object at the end."""

    def __init__(self, ceph):
        self.ceph = ceph
        self.name = "hw-lease-%s" % uuid.uuid4().hex[:8]

    def args(self, **extra):
        args = dict(self.ceph.connection(), pool=self.ceph.pool, name=self.name)
        args.update(extra)
        return args

    def run(self, check=False, diff=True, timeout=120, **extra):
        return run_module("ceph_lock", self.args(**extra), check=check, diff=diff, timeout=timeout)

    def stored(self):
        """The object's lease record as stored; None when there is no object."""
        proc = self.ceph.rados("get", self.name, "-", check=False)
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout) if proc.stdout else {}

    def cleanup(self):
        self.ceph.rados("rm", self.name, check=False)


@pytest.fixture
def leases(ceph):
    made = Leases(ceph)
    yield made
    made.cleanup()


def test_a_lease_is_taken_renewed_and_released(leases):
    # check mode says it would take it and takes nothing
    result = leases.run(check=True, owner="run-1", holder="alice on ops1: tenants.yml")
    assert result["changed"] and not result.get("failed"), result
    assert leases.stored() is None

    before = time.time()
    result = leases.run(owner="run-1", holder="alice on ops1: tenants.yml", duration=600)
    assert result["changed"] and result["owner"] == "run-1", result
    shown = {"owner": "run-1", "holder": "alice on ops1: tenants.yml", "since": result["lease"]["since"]}
    assert result["diff"] == {"before": {}, "after": shown}
    stored = leases.stored()
    assert stored["owner"] == "run-1" and stored["holder"] == "alice on ops1: tenants.yml"
    assert before - 1 <= stored["since"] <= time.time() and stored["expires"] == stored["since"] + 600

    # the same owner again: a renewal, not a change; the expiry moves on, the start stays
    time.sleep(1.1)
    again = leases.run(owner="run-1", holder="alice on ops1: tenants.yml", duration=600)
    assert not again["changed"] and again["previous"] is None, again
    renewed = leases.stored()
    assert renewed["since"] == stored["since"] and renewed["expires"] > stored["expires"]
    assert again["diff"]["before"] == again["diff"]["after"]

    # releasing: check mode keeps it, then it goes, then it is already gone
    assert leases.run(check=True, owner="run-1", state="unlocked")["changed"]
    assert leases.stored()["owner"] == "run-1"
    released = leases.run(owner="run-1", state="unlocked")
    assert released["changed"] and released["lease"] is None, released
    assert leases.stored() is None
    assert not leases.run(owner="run-1", state="unlocked")["changed"]


def test_a_held_lease_fails_a_run_naming_its_holder_and_another_owner_cannot_release_it(leases):
    leases.run(owner="run-1", holder="alice on ops1: tenants.yml")
    started = time.monotonic()
    refused = leases.run(owner="run-2", holder="bob on ops2: tenants.yml")
    assert refused["failed"] and not refused["changed"] and refused["parameter"] == "wait", refused
    assert "alice on ops1: tenants.yml (owner run-1)" in refused["msg"] and "expires in" in refused["msg"]
    assert refused["previous"]["owner"] == "run-1"
    assert time.monotonic() - started < 10
    # releasing with another owner is no change; the lease stays
    assert not leases.run(owner="run-2", state="unlocked")["changed"]
    assert leases.stored()["owner"] == "run-1"
    # check mode warns instead of waiting
    checked = leases.run(check=True, owner="run-2", wait=600)
    assert not checked.get("failed") and not checked["changed"], checked
    assert any("held by alice" in str(warning) for warning in checked.get("warnings", []))


def test_a_run_waits_for_the_lease_and_takes_it_when_it_is_released(leases):
    leases.run(owner="run-1", holder="alice on ops1")
    results = {}
    waiter = threading.Thread(target=lambda: results.update(
        second=leases.run(owner="run-2", holder="bob on ops2", wait=60)))
    waiter.start()
    time.sleep(4)
    assert leases.stored()["owner"] == "run-1", "the waiting run took a held lease"
    leases.run(owner="run-1", state="unlocked")
    waiter.join(timeout=90)
    second = results["second"]
    assert second["changed"] and second["lease"]["owner"] == "run-2", second
    assert second["waited"] >= 3 and second["previous"]["owner"] == "run-1"
    assert leases.stored()["owner"] == "run-2"


def test_runs_racing_for_the_lease_hold_it_one_at_a_time(leases, tmp_path):
    """Six runs at once, each: take the lease (waiting), note when it entered,
    hold it 1 s, note when it left, give it up. No two are ever inside at once."""
    log = []
    lock = threading.Lock()
    failures = []

    def run(index):
        owner = "racer-%d" % index
        taken = leases.run(owner=owner, holder="racer %d" % index, wait=120, timeout=180)
        if taken.get("failed"):
            failures.append(taken)
            return
        with lock:
            log.append((time.monotonic(), "in", owner))
        time.sleep(1)
        with lock:
            log.append((time.monotonic(), "out", owner))
        released = leases.run(owner=owner, state="unlocked")
        if not released["changed"]:
            failures.append(released)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    assert len(log) == 12
    inside = None
    for _when, what, owner in sorted(log):
        if what == "in":
            assert inside is None, "%s took the lease while %s held it" % (owner, inside)
            inside = owner
        else:
            assert inside == owner
            inside = None
    assert leases.stored() is None


@pytest.mark.parametrize("found", ["no object", "an expired lease"])
def test_runs_that_find_it_free_at_once_get_it_once(leases, found):
    """Five runs started together with wait 0: exactly one takes the lease
    (compare-and-swap on the object: an exclusive create where there is
    none, a write of the version read over an expired lease), the others fail
    naming it."""
    for _round in range(3):
        if found == "an expired lease":
            leases.run(owner="dead-run", holder="a run that died", duration=1)
            time.sleep(2.2)
        results = []
        threads = [threading.Thread(target=lambda i=index: results.append(
            leases.run(owner="at-once-%d" % i, holder="run %d" % i))) for index in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        took = [result for result in results if not result.get("failed")]
        assert len(took) == 1, results
        assert all(result["parameter"] == "wait" and took[0]["owner"] in result["msg"]
                   for result in results if result.get("failed"))
        assert leases.stored()["owner"] == took[0]["owner"]
        assert leases.run(owner=took[0]["owner"], state="unlocked")["changed"]


def test_a_write_over_a_version_that_is_gone_changes_nothing(leases):
    """The compare-and-swap itself, step by step: a run reads the lease, another
    changes it, the first one's write (of the version it read, or its exclusive
    create where it found none) is refused and the other's lease stays."""
    module = badinput.load("ceph_lock")
    ceph_util = badinput.load_util("ceph")
    options = ceph_util.connection_options(dict(leases.ceph.connection(), cluster="ceph", timeout=30))
    with ceph_util.Cluster(options) as cluster:
        ioctx = cluster.ioctx(leases.ceph.pool)
        try:
            run = module.Lease(types.SimpleNamespace(params=leases.args(namespace="")), ioctx, "slow-run", "slow")
            assert run.read() == (None, None)
            leases.run(owner="fast-run", holder="fast", duration=1)
            assert not run.swap(None, b"{}"), "an exclusive create over an existing lease succeeded"
            found, version = run.read()
            assert found["owner"] == "fast-run"
            time.sleep(2.2)
            leases.run(owner="faster-run", holder="faster")
            assert not run.swap(version, b"{}"), "a write over a changed lease succeeded"
            assert not run.swap(version, None), "a removal of a changed lease succeeded"
            assert leases.stored()["owner"] == "faster-run"
            found, version = run.read()
            assert run.swap(version, None) and leases.stored() is None
        finally:
            ioctx.close()


def test_an_expired_lease_is_taken_over_and_a_live_one_only_broken_with_force(leases):
    leases.run(owner="dead-run", holder="carol on ops3", duration=1)
    time.sleep(2.2)
    taken = leases.run(owner="run-2", holder="bob on ops2")
    assert taken["changed"] and taken["lease"]["owner"] == "run-2", taken
    assert any("took over" in str(warning) and "carol on ops3" in str(warning) for warning in taken["warnings"])

    # a live lease: kept without force, taken with it (a warning names whose it was)
    assert leases.run(owner="run-3", holder="dave")["failed"]
    forced = leases.run(owner="run-3", holder="dave", force=True)
    assert forced["changed"] and forced["lease"]["owner"] == "run-3" and forced["previous"]["owner"] == "run-2"
    assert any("broke" in str(warning) and "bob on ops2" in str(warning) for warning in forced["warnings"])

    # unlocked with force and no owner: nobody's afterwards
    assert leases.run(check=True, state="unlocked", force=True)["changed"]
    assert leases.stored()["owner"] == "run-3"
    removed = leases.run(state="unlocked", force=True)
    assert removed["changed"] and removed["lease"] is None, removed
    assert leases.stored() is None


def test_an_object_that_is_not_a_lease_is_refused_and_left_alone(leases):
    leases.ceph.rados("put", leases.name, "-", input_bytes=b"someone else's data")
    for args in ({"owner": "run-1"}, {"owner": "run-1", "state": "unlocked"}, {"state": "unlocked", "force": True}):
        result = leases.run(**args)
        assert result["failed"] and not result["changed"] and result["parameter"] == "name", result
        assert "not a lease" in result["msg"]
    assert leases.ceph.rados("get", leases.name, "-").stdout == b"someone else's data"


def test_a_generated_corpus_of_bad_input_is_refused_naming_the_parameter(leases):
    valid = leases.args(owner="run-1", holder="alice on ops1")
    ceph_names = ["-a", "a/b", "a@b"]
    cases = badinput.corpus(badinput.argument_spec("ceph_lock"), valid,
                            names=("name", "pool", "owner", "user"),
                            bad={"namespace": [value for value in badinput.METACHARACTERS if value] + ceph_names,
                                 "name": ceph_names, "pool": ceph_names + ["no-such-pool"],
                                 "owner": ["x" * 129], "holder": ["", "a\nb", "a\x1bb", "x" * 301],
                                 "duration": [0, -1, 7 * 24 * 3600 + 1], "wait": [-1], "timeout": [0, -1],
                                 "cluster": ["", "a b"]})
    # releasing needs the owner (or force)
    cases.append(("state=unlocked without owner", dict(valid, state="unlocked", owner=None), "owner"))
    assert len(cases) >= 130
    found = badinput.problems(cases, lambda args: run_module("ceph_lock", args), leases.stored)
    assert not found, "\n".join(found)
    assert leases.stored() is None
