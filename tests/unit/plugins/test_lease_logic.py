"""Pure logic of ceph_lock: the lease record, its checks, and what a run does
with the lease it finds (the table of state, owner, expiry and force)."""

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import lease
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

NOW = 1_800_000_000


def held(owner="other", expires=NOW + 600, since=NOW - 60, holder="bob on ops2"):
    return {"format": lease.FORMAT, "owner": owner, "holder": holder, "since": since, "expires": expires}


@pytest.mark.parametrize("state, found, force, action", [
    ("locked", None, False, lease.ACQUIRE),
    ("locked", held(expires=NOW), False, lease.ACQUIRE),          # expired at this very second
    ("locked", held(expires=NOW - 1), False, lease.ACQUIRE),
    ("locked", held(owner="mine"), False, lease.RENEW),
    ("locked", held(owner="mine", expires=NOW - 5), False, lease.ACQUIRE),  # lapsed: taken anew
    ("locked", held(), False, lease.WAIT),
    ("locked", held(), True, lease.ACQUIRE),
    ("unlocked", None, False, lease.NOTHING),
    ("unlocked", None, True, lease.NOTHING),
    ("unlocked", held(owner="mine"), False, lease.RELEASE),
    ("unlocked", held(owner="mine", expires=NOW - 5), False, lease.RELEASE),
    ("unlocked", held(), False, lease.NOTHING),
    ("unlocked", held(expires=NOW - 5), False, lease.NOTHING),
    ("unlocked", held(), True, lease.BREAK),
])
def test_what_a_run_does_with_the_lease_it_finds(state, found, force, action):
    assert lease.plan(state, found, "mine", NOW, force) == action


def test_a_record_round_trips_and_keeps_its_start_when_renewed():
    first = lease.record("mine", "alice on ops1", 3600, now=NOW)
    assert lease.loads(lease.dumps(first)) == first
    assert (first["since"], first["expires"]) == (NOW, NOW + 3600)
    renewed = lease.record("mine", "alice on ops1", 3600, now=NOW + 100, since=first["since"])
    assert (renewed["since"], renewed["expires"]) == (NOW, NOW + 3700)
    assert lease.public(renewed) == {"owner": "mine", "holder": "alice on ops1", "since": NOW,
                                     "expires": NOW + 3700}
    assert lease.public(None) is None


@pytest.mark.parametrize("data", [
    b"hello", b"\xff\xfe", b"[]", b'{"owner": "x"}',
    b'{"format": "hardway.cloud lease 1", "owner": "x", "holder": "h", "since": 1, "expires": "soon"}',
    b'{"format": "hardway.cloud lease 1", "owner": 5, "holder": "h", "since": 1, "expires": 2}',
    b'{"format": "hardway.cloud lease 1", "owner": "x", "holder": "h", "since": true, "expires": 2}',
])
def test_an_object_that_is_not_a_lease_is_refused(data):
    with pytest.raises(ValueError):
        lease.loads(data)


def test_an_empty_object_is_no_lease():
    assert lease.loads(b"") is None


def test_owners_are_unique_tokens_and_checked():
    made = set(lease.new_owner() for _count in range(100))
    assert len(made) == 100
    for owner in made:
        assert lease.check_owner("owner", owner) == owner
    for bad in ("", "a b", "a;b", "a\n", "x" * 129, 5, None):
        with pytest.raises(ParameterError) as caught:
            lease.check_owner("owner", bad)
        assert caught.value.parameter == "owner"


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "a\x1bb", "a\tb", "x" * 301, 7])
def test_a_holder_is_one_printable_line(bad):
    with pytest.raises(ParameterError) as caught:
        lease.check_holder("holder", bad)
    assert caught.value.parameter == "holder"


def test_the_description_says_who_since_when_and_until_when():
    text = lease.describe(held(since=NOW - 60, expires=NOW + 600), NOW)
    assert text.startswith("bob on ops2 (owner other) since ")
    assert text.endswith("expires in 600 s")
    assert lease.describe(held(expires=NOW - 30), NOW).endswith("expired 30 s ago")
