"""Pure logic of cloudinit_seed: the seed's files, their checks, and a deterministic ISO."""

import os
import time

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import cloudinit
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC8dbOPN3UC4XqnCRmHCDrxfzKaQuC+/ke1LB0p3Rc2K admin@example.org"
RSA_BLOB_OF_ED25519 = "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIC8dbOPN3UC4XqnCRmHCDrxfzKaQuC+/ke1LB0p3Rc2K x"


def params(**extra):
    base = {"instance_id": "web1", "hostname": "web1", "user_data": None, "meta_data": {}, "network_config": None,
            "vendor_data": None, "ssh_authorized_keys": []}
    base.update(extra)
    return base


def files(**extra):
    warnings = []
    return cloudinit.files(params(**extra), warnings), warnings


def test_a_dict_becomes_a_sorted_cloud_config_with_the_keys_merged():
    seed, warnings = files(user_data={"write_files": [{"path": "/etc/motd", "content": "hi\n"}], "packages": ["a"],
                                      "ssh_authorized_keys": ["ssh-rsa AAAAB3 other"]},
                           ssh_authorized_keys=[KEY])
    text = seed["user-data"]
    assert text.startswith("#cloud-config\n")
    assert text.index("packages:") < text.index("ssh_authorized_keys:") < text.index("write_files:")
    assert "- ssh-rsa AAAAB3 other\n- " + KEY in text
    assert seed["meta-data"] == "instance-id: web1\nlocal-hostname: web1\n"
    assert warnings == []
    assert set(seed) == {"meta-data", "user-data"}


def test_strings_are_used_as_given_and_cloud_configs_are_checked():
    raw = "#!/bin/sh\necho hi\n"
    assert files(user_data=raw)[0]["user-data"] == raw
    multipart = "Content-Type: multipart/mixed; boundary=X\nMIME-Version: 1.0\n\n--X--\n"
    assert files(user_data=multipart)[0]["user-data"] == multipart
    seed, warnings = files(user_data="#cloud-config\nruncmd: [ls]\nhostnmae: x\n")
    assert seed["user-data"] == "#cloud-config\nruncmd: [ls]\nhostnmae: x\n"
    assert warnings == ["user_data: cloud-init does not know the top-level keys hostnmae (typo?)"]


def test_without_user_data_an_empty_cloud_config_is_written():
    assert files()[0]["user-data"] == "#cloud-config\n{}\n"
    assert files(ssh_authorized_keys=[KEY])[0]["user-data"] == "#cloud-config\nssh_authorized_keys:\n- %s\n" % KEY


def test_network_config_and_vendor_data():
    seed, _warnings = files(network_config={"version": 2, "ethernets": {"eth0": {"dhcp4": False}}},
                            vendor_data={"runcmd": [["true"]]}, meta_data={"public-keys": ["k"]})
    assert seed["network-config"] == "ethernets:\n  eth0:\n    dhcp4: false\nversion: 2\n"
    assert seed["vendor-data"] == "#cloud-config\nruncmd:\n- - 'true'\n"
    assert "public-keys:\n- k\n" in seed["meta-data"]
    assert files(network_config={"network": {"version": 1, "config": []}})[0]["network-config"].startswith("network:")


@pytest.mark.parametrize("extra,parameter", [
    ({"instance_id": None}, "instance_id"),
    ({"instance_id": "a b"}, "instance_id"),
    ({"instance_id": "../../etc"}, "instance_id"),
    ({"instance_id": "vm1\n"}, "instance_id"),
    ({"instance_id": ""}, "instance_id"),
    ({"hostname": "web_1"}, "hostname"),
    ({"hostname": "-web"}, "hostname"),
    ({"hostname": "a" * 64}, "hostname"),
    ({"user_data": "plain text"}, "user_data"),
    ({"user_data": ["a"]}, "user_data"),
    ({"user_data": "#cloud-config\n- a list\n"}, "user_data"),
    ({"user_data": "#cloud-config\nkey: [unclosed\n"}, "user_data"),
    ({"user_data": {1: "a"}}, "user_data"),
    ({"user_data": "#!/bin/sh\n", "ssh_authorized_keys": [KEY]}, "ssh_authorized_keys"),
    ({"vendor_data": 3}, "vendor_data"),
    ({"meta_data": {"local-hostname": "x"}}, "meta_data"),
    ({"meta_data": ["x"]}, "meta_data"),
    ({"network_config": {"ethernets": {}}}, "network_config"),
    ({"network_config": {"version": "2"}}, "network_config"),
    ({"network_config": "version: 2"}, "network_config"),
    ({"ssh_authorized_keys": ["not a key"]}, "ssh_authorized_keys[0]"),
    ({"ssh_authorized_keys": [KEY, "ssh-ed25519 %%%"]}, "ssh_authorized_keys[1]"),
    ({"ssh_authorized_keys": [RSA_BLOB_OF_ED25519]}, "ssh_authorized_keys[0]"),
    ({"ssh_authorized_keys": [KEY + "\nssh-ed25519 AAAA"]}, "ssh_authorized_keys[0]"),
])
def test_bad_input_names_the_parameter(extra, parameter):
    with pytest.raises(ParameterError) as err:
        cloudinit.files(params(**extra), [])
    assert err.value.parameter == parameter


def test_outline_hides_user_data_values():
    seed, _warnings = files(user_data={"password": "hunter2", "chpasswd": {"expire": False}},
                            vendor_data="#!/bin/sh\necho secret\n")
    text = cloudinit.outline(seed)
    assert "hunter2" not in text and "secret" not in text
    assert "user-data: (content hidden, sha256 " in text and "keys: chpasswd, password)" in text
    assert "vendor-data: (content hidden, sha256 " in text and "not a cloud-config" in text
    assert "instance-id: web1" in text


def test_iso_bytes_depend_only_on_the_content(monkeypatch):
    seed, _warnings = files(user_data={"runcmd": [["touch", "/x"]]}, network_config={"version": 2})
    first = cloudinit.build_iso(seed)
    time.sleep(1.1)
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        second = cloudinit.build_iso(dict(reversed(list(seed.items()))))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert first == second
    assert first[0x8001:0x8006] == b"CD001"
    assert first[0x8028:0x8028 + 6] == b"cidata"
    other, _warnings = files(user_data={"runcmd": [["touch", "/y"]]}, network_config={"version": 2})
    assert cloudinit.build_iso(other) != first
    # pycdlib's clock is its own again afterwards
    import pycdlib.dates  # pylint: disable=import-outside-toplevel
    assert pycdlib.dates.time is time


def test_iso_reads_back():
    seed, _warnings = files(user_data={"runcmd": [["true"]]}, vendor_data={"packages": ["a"]},
                            network_config={"version": 2})
    label, found = cloudinit.read_iso(cloudinit.build_iso(seed))
    assert label == "cidata" and found == seed
    names = [cloudinit._iso_name(n) for n in cloudinit.FILES]
    assert len(set(names)) == len(names)
    assert all(len(os.path.basename(n).split(".")[0]) <= 8 for n in names)
