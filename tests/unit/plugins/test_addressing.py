"""Address arithmetic: gateways and SLAAC addresses."""

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils.addressing import eui64_address, prefix_address


def test_the_designs_example_address():
    assert eui64_address("2a0a:e5c1:111:888::/64", "02:00:f0:a9:c4:4e") == "2a0a:e5c1:111:888:0:f0ff:fea9:c44e"
    assert eui64_address("2001:db8::/64", "52:54:00:12:34:56") == "2001:db8::5054:ff:fe12:3456"


def test_prefix_address():
    assert prefix_address("2001:db8:100::/64") == "2001:db8:100::1"
    assert prefix_address("2001:db8:100::/64", 1, True) == "2001:db8:100::1/64"
    assert prefix_address("192.0.2.0/24", 254) == "192.0.2.254"


@pytest.mark.parametrize("prefix, mac", [("2001:db8::/48", "02:00:00:00:00:01"), ("2001:db8::1/64", "02:00:00:00:00:01"),
                                         ("2001:db8::/64", "02:00:00:00:00"), ("2001:db8::/64", "zz:00:00:00:00:01")])
def test_bad_eui64_input(prefix, mac):
    with pytest.raises(ValueError):
        eui64_address(prefix, mac)


def test_bad_prefix_address_input():
    with pytest.raises(ValueError):
        prefix_address("192.0.2.0/30", 4)
