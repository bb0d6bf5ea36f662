"""radvd_prefix with a real radvd on an "edge" namespace advertising into a
VXLAN network that spans two "hypervisors" with a VM each."""

import os

import pytest

from module_runner import run_module
from netfabric import eui64, routed_network, wait_for

import badinput

PREFIX = "2001:db8:100::/64"
MAC1, MAC2 = "02:00:f0:a9:c4:4e", "02:00:00:00:02:02"
OTHER = """# hand-written, not ours: must survive every change byte for byte
interface br-other
{
    AdvSendAdvert on;   # a comment with { braces }
    prefix 2001:db8:ffff::/64 { };
};
"""


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    fab = routed_network("ra")
    try:
        fab.exec("edge", ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        fab.add_vm("vm1", "hv1", "br-vni100", MAC1)
        fab.add_vm("vm2", "hv2", "br-vni100", MAC2)
        directory = tmp_path_factory.mktemp("radvd")
        fab.conf = str(directory / "radvd.conf")
        fab.pid = str(directory / "radvd.pid")
        fab.log = str(directory / "radvd.log")
        with open(fab.conf, "w") as handle:
            handle.write(OTHER)
        yield fab
    finally:
        fab.destroy()


def advertise(cloud, check=False, **args):
    args.setdefault("interface", "br-vni100")
    return run_module("radvd_prefix", dict(args, config=cloud.conf, pid_file=cloud.pid), check=check)


def read(path):
    with open(path) as handle:
        return handle.read()


def reloads(cloud):
    return read(cloud.log).count("attempting to reread config file") if os.path.exists(cloud.log) else 0


BASE = dict(prefixes=[PREFIX], rdnss=["2001:db8::53"], dnssl=["example.org"], min_interval=3, max_interval=4,
            default_lifetime=30, mtu=1430)


def changed(**args):
    wanted = dict(BASE)
    wanted.update(args)
    return wanted


def test_first_stanza_is_added_beside_the_others(cloud):
    result = advertise(cloud, **BASE)
    assert result["changed"] and result["interfaces"] == ["br-other", "br-vni100"], result
    assert "radvd is not running" in str(result.get("warnings")), result
    text = read(cloud.conf)
    assert text.startswith(OTHER) and "interface br-vni100 {" in text
    assert result["diff"]["before"] == "" and "prefix 2001:db8:100::/64 {" in result["diff"]["after"]


def start_radvd(cloud):
    cloud.spawn("edge", ["radvd", "--nodaemon", "--config", cloud.conf, "--pidfile", cloud.pid,
                         "--logmethod", "logfile", "--logfile", cloud.log, "--debug", "1"])


def test_vms_on_both_hypervisors_get_slaac_addresses_and_dns(cloud):
    start_radvd(cloud)
    assert wait_for(lambda: os.path.exists(cloud.pid)), "radvd did not start"
    for vm, mac in (("vm1", MAC1), ("vm2", MAC2)):
        expected = eui64(PREFIX, mac) + "/64"
        assert wait_for(lambda: expected in cloud.addresses(vm)), "%s has no SLAAC address %s: %s" % (
            vm, expected, cloud.addresses(vm))
        advert = cloud.exec(vm, ["rdisc6", "-1", "-r", "5", "-w", "1500", "eth0"]).stdout
        assert "2001:db8:100::/64" in advert and "Recursive DNS server     : 2001:db8::53" in advert, advert
        assert "DNS search list          : example.org" in advert and "MTU" in advert and "1430" in advert, advert
    # the design's example address: 02:00:f0:a9:c4:4e in the prefix
    assert eui64("2a0a:e5c1:111:888::/64", MAC1) == "2a0a:e5c1:111:888:0:f0ff:fea9:c44e"
    assert cloud.wait_ping("vm1", eui64(PREFIX, MAC2)), "vm1 cannot reach vm2's SLAAC address"


def test_same_input_changes_nothing_and_does_not_reload(cloud):
    before, count = read(cloud.conf), reloads(cloud)
    result = advertise(cloud, **BASE)
    assert not result["changed"] and result["service_action"] is None, result
    assert read(cloud.conf) == before and reloads(cloud) == count


def test_check_mode_and_diff_show_the_change_without_making_it(cloud):
    before, count = read(cloud.conf), reloads(cloud)
    result = advertise(cloud, check=True, **changed(dnssl=["example.org", "corp.example"]))
    assert result["changed"] and "DNSSL example.org corp.example {" in result["diff"]["after"]
    assert "DNSSL example.org {" in result["diff"]["before"]
    assert read(cloud.conf) == before and reloads(cloud) == count


def test_a_change_is_validated_written_and_reloaded(cloud):
    count = reloads(cloud)
    result = advertise(cloud, **changed(dnssl=["example.org", "corp.example"]))
    assert result["changed"] and result["service_action"] == "reloaded", result
    assert read(cloud.conf).startswith(OTHER)
    assert wait_for(lambda: reloads(cloud) == count + 1)
    advert = wait_for(lambda: "corp.example" in cloud.exec("vm2", ["rdisc6", "-1", "-r", "3", "eth0"]).stdout)
    assert advert, "the VM does not see the new search list"


def test_radvd_crashed_during_a_run_then_started_again_converges(cloud):
    """A fault: radvd is killed (its pid file left behind) when the module
    runs. The module writes the validated file, says radvd is not running and
    fails nothing; radvd started again advertises it; a re-run changes nothing."""
    daemon = cloud.processes[-1]
    daemon.kill()
    daemon.wait(10)
    assert os.path.exists(cloud.pid)
    wanted = changed(dnssl=["example.org", "fault.example"])
    result = advertise(cloud, **wanted)
    assert result["changed"] and not result.get("failed") and result["service_action"] is None, result
    assert "radvd is not running" in str(result.get("warnings")), result
    start_radvd(cloud)
    assert wait_for(lambda: "fault.example" in cloud.exec("vm2", ["rdisc6", "-1", "-r", "3", "eth0"]).stdout, 30), \
        "the VM does not see what radvd was given while it was down"
    again = advertise(cloud, **wanted)
    assert not again["changed"] and not again.get("failed"), again


def test_a_hand_edit_of_the_stanza_is_corrected_and_shown(cloud):
    edited = read(cloud.conf).replace("MaxRtrAdvInterval 4;", "MaxRtrAdvInterval 600;")
    with open(cloud.conf, "w") as handle:
        handle.write(edited)
    count = reloads(cloud)
    result = advertise(cloud, **changed(dnssl=["example.org", "corp.example"]))
    assert result["changed"] and "MaxRtrAdvInterval 600;" in result["diff"]["before"], result
    assert "MaxRtrAdvInterval 4;" in result["diff"]["after"] and "MaxRtrAdvInterval 4;" in read(cloud.conf)
    assert read(cloud.conf).startswith(OTHER) and wait_for(lambda: reloads(cloud) == count + 1)


def test_a_file_radvd_rejects_is_not_installed(cloud):
    # someone broke the other stanza by hand: radvd refuses the whole file
    broken = read(cloud.conf).replace("AdvSendAdvert on;   #", "AdvSendAdvert sometimes;   #")
    with open(cloud.conf, "w") as handle:
        handle.write(broken)
    count = reloads(cloud)
    result = advertise(cloud, **changed(rdnss=["2001:db8::54"]))
    assert result.get("failed") and "radvd rejected the new %s" % cloud.conf in result["msg"], result
    assert "syntax error" in result["msg"] and cloud.conf + ":" in result["msg"], result["msg"]
    assert read(cloud.conf) == broken and reloads(cloud) == count
    assert not [name for name in os.listdir(os.path.dirname(cloud.conf)) if name.startswith(".radvd.conf")]
    with open(cloud.conf, "w") as handle:
        handle.write(broken.replace("AdvSendAdvert sometimes;", "AdvSendAdvert on;"))


@pytest.mark.parametrize("args, parameter, words", [
    ({"prefixes": ["2001:db8:100::/48"]}, "prefixes[0].prefix", "needs a /64"),
    ({"prefixes": ["2001:db8:100::1/64"]}, "prefixes[0].prefix", "host bits set"),
    ({"prefixes": ["10.0.0.0/8"]}, "prefixes[0].prefix", "not an IPv6 prefix"),
    ({"prefixes": [{"prefix": PREFIX, "valid_lifetime": 10, "preferred_lifetime": 20}]},
     "prefixes[0].preferred_lifetime", "longer than valid_lifetime"),
    ({"prefixes": [{"prefix": PREFIX, "valid_lifetime": "forever"}]}, "prefixes[0].valid_lifetime", "infinity"),
    ({"prefixes": [{"prefix": PREFIX, "onlink": True}]}, "prefixes[0]", "unknown keys onlink"),
    ({"prefixes": [{"on_link": True}]}, "prefixes[0]", "needs a 'prefix'"),
    ({"prefixes": [PREFIX, PREFIX]}, "prefixes", "twice"),
    ({"rdnss": ["2001:db8::53;"]}, "rdnss[0]", "not an IPv6 address"),
    ({"rdnss": ["ff02::1"]}, "rdnss[0]", "not a unicast"),
    ({"dnssl": ["exa mple.org"]}, "dnssl[0]", "not a domain name"),
    ({"dnssl": ["x.org; };"]}, "dnssl[0]", "not a domain name"),
    ({"routes": [{"route": "2001:db8::/48", "preference": "urgent"}]}, "routes[0].preference", "not one of"),
    ({"min_interval": 9, "max_interval": 10}, "min_interval", "0.75"),
    ({"max_interval": 2}, "max_interval", "out of range"),
    ({"default_lifetime": 5, "max_interval": 10}, "default_lifetime", "between max_interval"),
    ({"mtu": 1000}, "mtu", "1280"),
    ({"interface": "br0 { };\ninterface evil"}, "interface", "not a usable interface name"),
])
def test_bad_input_fails_naming_the_parameter_and_changes_nothing(cloud, args, parameter, words):
    before, count = read(cloud.conf), reloads(cloud)
    result = advertise(cloud, **changed(**args))
    assert result.get("failed") and result.get("parameter") == parameter and words in result["msg"], result
    assert read(cloud.conf) == before and reloads(cloud) == count


def test_absent_removes_only_its_stanza_and_the_last_one_stops_radvd(cloud):
    result = advertise(cloud, state="absent")
    assert result["changed"] and result["interfaces"] == ["br-other"] and result["service_action"] == "reloaded"
    assert read(cloud.conf).rstrip("\n").endswith(OTHER.rstrip("\n").splitlines()[-1])
    assert "br-vni100" not in read(cloud.conf) and OTHER in read(cloud.conf)
    assert not advertise(cloud, state="absent")["changed"]
    result = advertise(cloud, interface="br-other", state="absent")
    assert result["changed"] and result["interfaces"] == [] and result["service_action"] == "stopped", result
    assert wait_for(lambda: cloud.processes[-1].poll() is not None, timeout=10), "radvd still runs without interfaces"


def test_a_generated_corpus_of_bad_input_is_refused_naming_the_parameter(cloud):
    valid = changed(interface="br-vni100", prefixes=[{"prefix": PREFIX}])
    cases = badinput.corpus(badinput.argument_spec("radvd_prefix"), valid, names=("interface", "dnssl[]", "rdnss[]"),
                            bad={"prefixes[]": ["2001:db8::/48", "2001:db8::1/64", "10.0.0.0/24", "zz::/64",
                                                {"prefix": PREFIX, "valid_lifetime": -1}],
                                 "rdnss[]": ["ff02::1", "::", "192.0.2.53"], "dnssl[]": ["-a.org", "a..org"],
                                 "routes[]": ["2001:db8::/129", "zz::/48", {"route": "2001:db8::/48", "lifetime": -1}],
                                 "mtu": [1000, 70000], "max_interval": [2, 2000], "min_interval": [1, 2000],
                                 "default_lifetime": [1, 10000], "rdnss_lifetime": [-1, "soon"],
                                 "dnssl_lifetime": [-1, "soon"]})
    assert len(cases) >= 30
    found = badinput.problems(cases, lambda args: run_module("radvd_prefix", dict(args, config=cloud.conf,
                                                                                  pid_file=cloud.pid)),
                              lambda: (read(cloud.conf), reloads(cloud)))
    assert not found, "\n".join(found)
