"""The lab's derived names and addresses, and the validation of its spec."""

import ipaddress

import pytest

from labhosts.__main__ import host_arg
from labhosts.errors import LabError
from labhosts.topology import controller_link_name, parse, ula_prefix


def test_prefix_is_a_stable_unique_local_64_per_lab():
    first = ula_prefix("cloud")
    assert first == ula_prefix("cloud")
    assert first != ula_prefix("cloud2")
    assert first.prefixlen == 64
    assert first.subnet_of(ipaddress.IPv6Network("fd00::/8"))


def test_hosts_get_distinct_addresses_in_the_prefix_and_groups_keep_order():
    topo = parse({"lab": "t", "hosts": [
        {"name": "hv1", "groups": ["hypervisors"], "devices": ["kvm", "tun"]},
        {"name": "hv2", "groups": ["hypervisors"]},
        "stor1",
    ]})
    addresses = [h.address for h in topo.hosts]
    assert len(set(addresses)) == 3
    assert all(a in topo.prefix for a in addresses)
    assert topo.controller_address not in addresses
    assert topo.groups() == {"hypervisors": ["hv1", "hv2"]}
    assert topo.host("hv1").device_paths == ["/dev/kvm", "/dev/net/tun"]
    assert topo.host("stor1").groups == []


def test_names_of_one_lab_never_match_another_labs_prefix():
    one, other = parse({"lab": "a", "hosts": ["x"]}), parse({"lab": "a-b", "hosts": ["x"]})
    assert not any(n.startswith("hwl.a.") for n in other.netns_names)
    assert all(n.startswith("hwl.a.") for n in one.netns_names)


def test_controller_link_name_fits_the_kernel_limit():
    assert len(controller_link_name("a" * 31)) <= 15
    assert controller_link_name("x") != controller_link_name("y")


@pytest.mark.parametrize("spec, words", [
    ([], "mapping"),
    ({"lab": "Bad_Name", "hosts": ["a"]}, "'lab'"),
    ({"lab": "ok"}, "'hosts'"),
    ({"lab": "ok", "hosts": []}, "'hosts'"),
    ({"lab": "ok", "hosts": ["a", "a"]}, "twice"),
    ({"lab": "ok", "hosts": ["fabric"]}, "hosts[0].name"),
    ({"lab": "ok", "hosts": ["9a"]}, "hosts[0].name"),
    ({"lab": "ok", "hosts": [{"name": "a", "groups": "x"}]}, "hosts[0].groups"),
    ({"lab": "ok", "hosts": [{"name": "a", "groups": ["bad-group"]}]}, "hosts[0].groups"),
    ({"lab": "ok", "hosts": [{"name": "a", "devices": ["gpu"]}]}, "hosts[0].devices"),
    ({"lab": "ok", "hosts": [{"name": "a", "colour": "red"}]}, "unknown keys colour"),
    ({"lab": "ok", "hosts": ["a"], "extra": 1}, "unknown keys extra"),
])
def test_bad_specs_are_refused_naming_the_field(spec, words):
    with pytest.raises(LabError, match=None) as err:
        parse(spec)
    assert words in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("hv1", {"name": "hv1", "groups": [], "devices": []}),
    ("hv1:hypervisors", {"name": "hv1", "groups": ["hypervisors"], "devices": []}),
    ("hv1:hypervisors,edge+kvm+tun", {"name": "hv1", "groups": ["hypervisors", "edge"], "devices": ["kvm", "tun"]}),
    ("hv1+kvm", {"name": "hv1", "groups": [], "devices": ["kvm"]}),
])
def test_host_argument_of_the_command_line(text, expected):
    assert host_arg(text) == expected
