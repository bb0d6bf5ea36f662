"""The Ceph connection options shared by the Ceph modules: checked before connecting."""

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import ceph
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError


@pytest.fixture
def files(tmp_path):
    conf, keyring = tmp_path / "ceph.conf", tmp_path / "ceph.client.admin.keyring"
    conf.write_text("[global]\nmon host = [::1]:1\n")
    keyring.write_text("")
    return str(conf), str(keyring)


def params(conf, keyring=None, **extra):
    base = {"conf": conf, "keyring": keyring, "user": "admin", "cluster": "ceph", "timeout": 30}
    base.update(extra)
    return base


def test_options(files):
    conf, keyring = files
    assert ceph.connection_options(params(conf, keyring)) == {
        "conf": conf, "keyring": keyring, "user": "admin", "cluster": "ceph", "timeout": 30}
    assert ceph.connection_options(params(conf, user="client.hypervisor"))["user"] == "hypervisor"
    assert ceph.connection_options(params(conf))["keyring"] is None


@pytest.mark.parametrize("extra,parameter", [
    ({"conf": "/nonexistent/ceph.conf"}, "conf"),
    ({"keyring": "/nonexistent/keyring"}, "keyring"),
    ({"user": "client admin"}, "user"),
    ({"user": "a/b"}, "user"),
    ({"cluster": "my cluster"}, "cluster"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -3}, "timeout"),
])
def test_bad_options_name_the_parameter(files, extra, parameter):
    args = params(*files)
    args.update(extra)
    with pytest.raises(ParameterError) as info:
        ceph.connection_options(args)
    assert info.value.parameter == parameter


def test_argument_spec_merges_the_connection_options():
    spec = ceph.ceph_argument_spec(pool=dict(type="str", required=True))
    assert spec["pool"] == {"type": "str", "required": True}
    assert spec["user"]["aliases"] == ["client"] and spec["conf"]["default"] == "/etc/ceph/ceph.conf"
    assert spec["timeout"]["default"] == 30 and "pool" not in ceph.CEPH_ARGUMENT_SPEC


class _Error(Exception):
    """What the rados and rbd bindings raise: an exception carrying errno."""

    def __init__(self, message, errno):
        super().__init__(message)
        self.errno = errno


def test_a_timeout_names_the_osds_of_the_pool_and_other_errors_stay_as_they_are():
    # both bindings raise ETIMEDOUT (110) when librados gives up, rbd as a negative errno in places
    for errno in (110, -110):
        message = ceph.explain(_Error("[errno 110] RBD operation timeout", errno), "vms", 10, "reading vm1-root")
        assert message == ("the OSDs of pool vms did not answer within 10 s (timeout) reading vm1-root: are they up, "
                           "and are the pool's placement groups active?")
    message = ceph.explain(_Error("x", 110), "vms", 10)
    assert message.startswith("the OSDs of pool vms did not answer within 10 s (timeout): "), message
    assert ceph.explain(_Error("[errno 2] no such image", 2), "vms", 10) == "[errno 2] no such image"
    assert not ceph.timed_out(ValueError("no errno"))
