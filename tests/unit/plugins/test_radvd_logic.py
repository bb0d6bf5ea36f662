"""Pure logic of radvd_prefix: validation, rendering, and stanza surgery."""

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import radvd
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

CONFIG = """# top comment with a { brace
interface eth1 { AdvSendAdvert on; };
interface "br-vni100"
{
    AdvSendAdvert on;
    prefix 2001:db8:100::/64 { AdvOnLink on; };  # trailing comment }
};

# between
interface eth2 {
    AdvSendAdvert off;
};
"""


def params(**extra):
    base = {"interface": "br-vni100", "prefixes": ["2001:db8:100::/64"], "rdnss": [], "dnssl": [], "routes": [],
            "min_interval": None, "max_interval": None, "default_lifetime": None, "mtu": None,
            "rdnss_lifetime": None, "dnssl_lifetime": None}
    base.update(extra)
    return base


def test_stanzas_are_found_with_quotes_comments_and_braces_in_comments():
    spans = radvd.stanzas(CONFIG)
    assert sorted(spans) == ["br-vni100", "eth1", "eth2"]
    assert radvd.current(CONFIG, "eth1") == "interface eth1 { AdvSendAdvert on; };\n"
    assert radvd.current(CONFIG, "br-vni100").startswith('interface "br-vni100"\n{')
    assert radvd.current(CONFIG, "br-vni100").endswith("};\n")


def test_replace_touches_only_its_stanza():
    new = radvd.replace(CONFIG, "br-vni100", "interface br-vni100 {\n    AdvSendAdvert on;\n};\n")
    assert new.replace("interface br-vni100 {\n    AdvSendAdvert on;\n};\n", "X") == \
        CONFIG.replace(radvd.current(CONFIG, "br-vni100"), "X")
    removed = radvd.replace(CONFIG, "eth1", None)
    assert "eth1" not in removed and removed.startswith("# top comment") and "# between" in removed
    added = radvd.replace("interface a { AdvSendAdvert on; };", "b", "interface b {\n};\n")
    assert added == "interface a { AdvSendAdvert on; };\ninterface b {\n};\n"
    assert radvd.replace(CONFIG, "nope", None) == CONFIG


@pytest.mark.parametrize("text", ["interface a { x; ", "interface a { } } ;", "junk;", "interface { };"])
def test_unparseable_files_are_reported(text):
    with pytest.raises(radvd.ConfigSyntaxError):
        radvd.stanzas(text)


def test_render_is_stable_and_complete():
    want = radvd.wanted(params(
        prefixes=[{"prefix": "2001:DB8:100::/64", "valid_lifetime": "Infinity", "preferred_lifetime": "infinity"}],
        rdnss=["2001:db8::53"], dnssl=["Example.ORG."], routes=["2001:db8:ff::/48"], min_interval=3,
        max_interval=10.0, default_lifetime=1800, mtu=1430, rdnss_lifetime=60))
    text = radvd.render(want)
    assert text == radvd.render(radvd.wanted(params(
        prefixes=[{"prefix": "2001:db8:100::/64", "valid_lifetime": "infinity", "preferred_lifetime": "infinity"}],
        rdnss=["2001:db8::53"], dnssl=["example.org"], routes=[{"route": "2001:db8:ff::/48"}], min_interval=3,
        max_interval=10, default_lifetime=1800, mtu=1430, rdnss_lifetime=60)))
    for line in ("interface br-vni100 {", "MaxRtrAdvInterval 10;", "AdvValidLifetime infinity;",
                 "RDNSS 2001:db8::53 {", "AdvRDNSSLifetime 60;", "DNSSL example.org {", "AdvLinkMTU 1430;",
                 "route 2001:db8:ff::/48 {", "AdvRoutePreference medium;"):
        assert line in text
    assert radvd.stanzas(text) == {"br-vni100": (0, len(text))}


@pytest.mark.parametrize("extra, parameter", [
    ({"interface": "a;b"}, "interface"), ({"prefixes": ["2001:db8::/56"]}, "prefixes[0].prefix"),
    ({"prefixes": [{"prefix": "2001:db8::/56", "autonomous": "maybe"}]}, "prefixes[0].autonomous"),
    ({"prefixes": [{"prefix": "2001:db8::/64", "valid_lifetime": -1}]}, "prefixes[0].valid_lifetime"),
    ({"prefixes": [42]}, "prefixes[0]"), ({"routes": [{"route": "x"}]}, "routes[0].route"),
    ({"routes": [{"route": "2001:db8::/48", "metric": 1}]}, "routes[0]"),
    ({"rdnss_lifetime": "soon"}, "rdnss_lifetime"), ({"mtu": 70000}, "mtu"),
    ({"min_interval": 2}, "min_interval"), ({"default_lifetime": 10000}, "default_lifetime"),
])
def test_bad_values_name_their_parameter(extra, parameter):
    with pytest.raises(ParameterError) as caught:
        radvd.wanted(params(**extra))
    assert caught.value.parameter == parameter
