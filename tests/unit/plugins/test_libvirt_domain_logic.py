"""Pure logic of kvm_instance: memory sizes, MACs, the owned part of a domain XML."""

import re

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import libvirt_domain as logic
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

# what libvirt (qemu driver) returns for a domain the module defined: uuid,
# addresses, controllers, aliases, default devices, seclabels
LIBVIRT_XML = """<domain type='qemu' id='3'>
  <name>web1</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <metadata>
    <hardway:instance xmlns:hardway="https://hardway.cloud/xmlns/instance/1">{"tenant": "acme"}</hardway:instance>
  </metadata>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <resource><partition>/machine</partition></resource>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/srv/vmlinuz</kernel>
    <initrd>/srv/initrd.img</initrd>
    <cmdline>console=ttyS0</cmdline>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact' check='full'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/srv/web1.qcow2' index='2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'/>
    <controller type='pci' index='0' model='pci-root'/>
    <interface type='bridge'>
      <mac address='52:54:00:AB:CD:EF'/>
      <source bridge='br100'/>
      <target dev='vnet0'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <interface type='network'>
      <source network='default'/>
      <model type='e1000'/>
    </interface>
    <serial type='file'>
      <source path='/srv/web1.log' append='on'/>
      <target type='isa-serial' port='0'><model name='isa-serial'/></target>
      <alias name='serial0'/>
    </serial>
    <console type='file'>
      <source path='/srv/web1.log' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <input type='mouse' bus='ps2'/>
    <memballoon model='virtio'/>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'><label>libvirt-4dea</label></seclabel>
</domain>
"""

OWNED = {
    "name": "web1", "type": "qemu", "vcpus": 1, "memory": 256,
    "kernel": "/srv/vmlinuz", "initrd": "/srv/initrd.img", "cmdline": "console=ttyS0",
    "disks": [{"path": "/srv/web1.qcow2", "format": "qcow2", "bus": "virtio", "readonly": False, "target": "vda"}],
    "interfaces": [{"bridge": "br100", "mac": "52:54:00:ab:cd:ef", "model": "virtio"}],
    "serial_log": "/srv/web1.log", "metadata": {"tenant": "acme"},
}

PARAMS = {"name": "web1", "virt_type": "qemu", "vcpus": 1, "memory": "256M", "kernel": "/srv/vmlinuz",
          "initrd": "/srv/initrd.img", "cmdline": "console=ttyS0",
          "disks": [{"path": "/srv/web1.qcow2", "format": "qcow2"}],
          "interfaces": [{"bridge": "br100", "mac": "52:54:00:AB:CD:EF"}], "serial_log": "/srv/web1.log",
          "metadata": {"tenant": "acme"}}


@pytest.mark.parametrize("value, mib", [(512, 512), ("512", 512), ("512M", 512), ("1G", 1024), ("1.5GiB", 1536),
                                        (1024.0, 1024), ("2048K", 2)])
def test_memory_sizes(value, mib):
    assert logic.parse_memory(value) == mib


@pytest.mark.parametrize("value", [0, -5, "-5", "0", "-1G", "1000K", "1GB", "lots", True, None, [512]])
def test_bad_memory_names_the_parameter(value):
    with pytest.raises(ParameterError) as error:
        logic.parse_memory(value)
    assert error.value.parameter == "memory"


def test_derived_macs_are_stable_local_unicast_and_distinct():
    mac = logic.derived_mac("web1", 0)
    assert mac == logic.derived_mac("web1", 0)
    assert re.match(r"^02(:[0-9a-f]{2}){5}$", mac)
    others = {logic.derived_mac(name, index) for name in ("web1", "web2") for index in range(4)}
    assert len(others) == 8


@pytest.mark.parametrize("mac", ["52:54:00:12:34", "zz:54:00:12:34:56", "01:00:5e:00:00:01", "00:00:00:00:00:00",
                                 "525400123456", 5])
def test_bad_macs(mac):
    with pytest.raises(ParameterError) as error:
        logic.check_mac("interfaces[1].mac", mac)
    assert error.value.parameter == "interfaces[1].mac"


def test_owned_part_of_libvirts_xml_ignores_libvirts_additions():
    assert logic.owned(LIBVIRT_XML) == OWNED


def test_the_same_parameters_are_no_change():
    target = logic.resolve(logic.wanted(PARAMS), OWNED)
    assert target == OWNED
    assert logic.owned(logic.apply(LIBVIRT_XML, target)) == OWNED


def test_a_change_keeps_what_the_module_does_not_own():
    params = dict(PARAMS, memory="1G", vcpus=2)
    target = logic.resolve(logic.wanted(params), OWNED)
    xml = logic.apply(LIBVIRT_XML, target)
    assert logic.owned(xml) == dict(OWNED, memory=1024, vcpus=2)
    for kept in ("<uuid>4dea22b3", "virtio-disk0", "seclabel", "network", "cdrom", "piix3-uhci", "qemu64"):
        assert kept in xml, kept
    # the unchanged disk and NIC keep libvirt's addresses
    assert xml.count("<address ") == 2


def test_left_out_options_keep_what_the_instance_has():
    target = logic.resolve(logic.wanted({"name": "web1"}), OWNED)
    assert target == OWNED


def test_nics_without_mac_keep_theirs_and_new_ones_are_derived():
    params = {"name": "web1", "interfaces": [{"bridge": "br100"}, {"bridge": "br200"}]}
    target = logic.resolve(logic.wanted(params), OWNED)
    assert [nic["mac"] for nic in target["interfaces"]] == ["52:54:00:ab:cd:ef", logic.derived_mac("web1", 1)]
    new = logic.resolve(logic.wanted(params), None)
    assert [nic["mac"] for nic in new["interfaces"]] == [logic.derived_mac("web1", 0), logic.derived_mac("web1", 1)]


def test_a_new_instance_from_the_skeleton():
    params = dict(PARAMS, seed="/srv/web1-seed.iso", virt_type=None, vcpus=None, memory=None,
                  disks=[{"path": "/srv/a.raw"}, {"path": "/dev/vg/b", "bus": "sata"}, {"path": "/srv/c.raw"}])
    target = logic.resolve(logic.wanted(params), None)
    xml = logic.apply(logic.skeleton("web1"), target)
    part = logic.owned(xml)
    assert part == target
    assert (part["type"], part["vcpus"], part["memory"]) == ("kvm", 1, 512)
    assert [(disk["target"], disk["readonly"]) for disk in part["disks"]] == \
        [("vda", False), ("sda", False), ("vdb", False), ("vdc", True)]
    assert "<source dev=\"/dev/vg/b\"" in xml.replace("'", '"')
    assert "<acpi" in xml


def test_removing_metadata_and_serial_and_nics():
    target = logic.resolve(logic.wanted({"name": "web1", "metadata": {}, "interfaces": [], "disks": []}), OWNED)
    part = logic.owned(logic.apply(LIBVIRT_XML, target))
    assert part["metadata"] == {} and part["interfaces"] == [] and part["disks"] == []
    assert "network" in logic.apply(LIBVIRT_XML, target)


def test_serial_log_change_moves_the_console_too():
    target = logic.resolve(logic.wanted({"name": "web1", "serial_log": "/srv/other.log"}), OWNED)
    xml = logic.apply(LIBVIRT_XML, target)
    assert "/srv/web1.log" not in xml and logic.owned(xml)["serial_log"] == "/srv/other.log"


def test_the_diff_shows_only_the_owned_part():
    before = logic.render(OWNED)
    after = logic.render(dict(OWNED, memory=512))
    assert "uuid" not in before and "address type" not in before and "seclabel" not in before
    assert [line for line in after.splitlines() if line not in before.splitlines()] == \
        ['  <memory unit="MiB">512</memory>']
    assert logic.render(None) == ""


def test_restart_is_not_needed_for_metadata():
    assert not logic.restart_differs(OWNED, dict(OWNED, metadata={"tenant": "other"}))
    assert logic.restart_differs(OWNED, dict(OWNED, vcpus=2))


@pytest.mark.parametrize("params, parameter", [
    ({"name": "a b"}, "name"),
    ({"name": "x", "vcpus": 0}, "vcpus"),
    ({"name": "x", "virt_type": "xen"}, "virt_type"),
    ({"name": "x", "disks": [{"path": "relative.img"}]}, "disks[0].path"),
    ({"name": "x", "disks": [{"path": "/a"}, {"path": "/b", "format": "vmdk"}]}, "disks[1].format"),
    ({"name": "x", "disks": ["/a"]}, "disks[0]"),
    ({"name": "x", "interfaces": [{"bridge": "br0"}, {"bridge": "has space"}]}, "interfaces[1].bridge"),
    ({"name": "x", "interfaces": [{"bridge": "br0", "mac": "nope"}]}, "interfaces[0].mac"),
    ({"name": "x", "interfaces": [{"bridge": "a", "mac": "02:00:00:00:00:01"},
                                  {"bridge": "b", "mac": "02:00:00:00:00:01"}]}, "interfaces[1].mac"),
    ({"name": "x", "interfaces": [{"bridge": "br0", "prefix": "2001:db8::/48"}]}, "interfaces[0].prefix"),
    ({"name": "x", "seed": "seed.iso"}, "seed"),
    ({"name": "x", "metadata": {"a": {1, 2}}}, "metadata"),
])
def test_bad_parameters_are_named(params, parameter):
    with pytest.raises(ParameterError) as error:
        logic.wanted(params)
    assert error.value.parameter == parameter


def test_host_problems_name_the_parameter():
    want = logic.wanted(dict(PARAMS, seed="/srv/seed.iso", interfaces=[{"bridge": "br100"}, {"bridge": "br9"}]))
    everything = {"/srv/vmlinuz", "/srv/initrd.img", "/srv/web1.qcow2", "/srv/seed.iso", "/srv"}

    def problem(missing=(), bridges=("br100", "br9")):
        found = logic.host_problems(want, lambda path: path in everything - set(missing), lambda b: b in bridges)
        return found.parameter if found else None

    assert problem() is None
    assert problem(["/srv/web1.qcow2"]) == "disks[0].path"
    assert problem(["/srv/seed.iso"]) == "seed"
    assert problem(["/srv/vmlinuz"]) == "kernel"
    assert problem(["/srv"]) == "serial_log"
    assert problem(bridges=("br100",)) == "interfaces[1].bridge"


def test_libvirt_errors_are_traced_to_parameters():
    want = logic.wanted(PARAMS)
    assert logic.parameter_of_error("Cannot get interface MTU on 'br100': No such device", want) == \
        "interfaces[0].bridge"
    assert logic.parameter_of_error("Cannot access storage file '/srv/web1.qcow2': No such file", want) == \
        "disks[0].path"
    assert logic.parameter_of_error("something else", want) is None


def test_interface_facts_with_slaac_addresses():
    want = logic.wanted({"name": "web1", "interfaces": [{"bridge": "br100", "prefix": "2a0a:e5c1:111:888::/64"}]})
    part = dict(OWNED, interfaces=[{"bridge": "br100", "mac": "02:00:f0:a9:c4:4e", "model": "virtio"}])
    assert logic.interface_facts(part, want) == [{"bridge": "br100", "mac": "02:00:f0:a9:c4:4e",
                                                  "prefix": "2a0a:e5c1:111:888::/64",
                                                  "address": "2a0a:e5c1:111:888:0:f0ff:fea9:c44e"}]


def test_disk_letters():
    assert [logic.disk_letters(i) for i in (0, 25, 26, 27, 701, 702)] == ["a", "z", "aa", "ab", "zz", "aaa"]
