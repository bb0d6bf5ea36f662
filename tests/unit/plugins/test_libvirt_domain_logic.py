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
    "name": "web1", "type": "qemu", "vcpus": 1, "memory": 256, "cpu_model": "qemu64",
    "kernel": "/srv/vmlinuz", "initrd": "/srv/initrd.img", "cmdline": "console=ttyS0",
    "disks": [{"path": "/srv/web1.qcow2", "rbd": None, "format": "qcow2", "bus": "virtio", "readonly": False,
               "target": "vda", "boot_order": None, "auth": None, "monitors": []}],
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


def test_the_cpu_libvirt_chose_is_no_reason_to_restart():
    assert not logic.restart_differs(OWNED, dict(OWNED, cpu_model=None))
    assert logic.restart_differs(OWNED, dict(OWNED, cpu_model="Haswell"))


@pytest.mark.parametrize("params, parameter", [
    ({"name": "a b"}, "name"),
    ({"name": "$(reboot)"}, "name"),
    ({"name": "web1\n"}, "name"),
    ({"name": "-web1"}, "name"),
    ({"name": "x", "vcpus": 0}, "vcpus"),
    ({"name": "x", "cmdline": "console=ttyS0\x00"}, "cmdline"),
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
    ({"name": "x", "seed": 5}, "seed"),
    ({"name": "x", "seed": {"rbd": {"pool": "vms"}}}, "seed.rbd.image"),
    ({"name": "x", "seed": {"iso": "/x"}}, "seed.iso"),
    ({"name": "x", "disks": [{"path": "/a", "rbd": {"pool": "vms", "image": "a"}}]}, "disks[0]"),
    ({"name": "x", "disks": [{}]}, "disks[0]"),
    ({"name": "x", "disks": [{"rbd": {"pool": "vms", "image": "a/b"}}]}, "disks[0].rbd.image"),
    ({"name": "x", "disks": [{"rbd": {"pool": "vms", "image": "a", "namespace": "t"}}]}, "disks[0].rbd.namespace"),
    ({"name": "x", "disks": [{"rbd": "vms/a"}]}, "disks[0].rbd"),
    ({"name": "x", "disks": [{"rbd": {"pool": "vms", "image": "a"}, "format": "qcow2"}]}, "disks[0].format"),
    ({"name": "x", "disks": [{"path": "/a", "boot_order": 0}]}, "disks[0].boot_order"),
    ({"name": "x", "disks": [{"path": "/a", "boot_order": 1}, {"path": "/b", "boot_order": 1}]},
     "disks[1].boot_order"),
    ({"name": "x", "disks": [{"rbd": {"pool": "vms", "image": "a"}}], "ceph": {"user": "a b"}}, "ceph.user"),
    ({"name": "x", "disks": [{"rbd": {"pool": "vms", "image": "a"}}], "ceph": {"monitors": ["m1:99999"]}},
     "ceph.monitors[0]"),
    ({"name": "x", "disks": [{"rbd": {"pool": "vms", "image": "a"}}], "ceph": {"monitors": ["a b"]}},
     "ceph.monitors[0]"),
    ({"name": "x", "cpu_model": "host passthrough"}, "cpu_model"),
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


RBD_XML = """<domain type='kvm'>
  <name>db1</name>
  <memory unit='KiB'>524288</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <cpu mode='host-model' check='partial'/>
  <devices>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='vms/db1-root' index='1'>
        <host name='2001:db8::10' port='6789'/>
        <host name='stor2'/>
        <auth username='hypervisor'>
          <secret type='ceph' usage='client.hypervisor secret'/>
        </auth>
      </source>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <auth username='hypervisor'>
        <secret type='ceph' uuid='6a1e1b6c-58a5-5d6f-9e1f-2d7b0c3e4f51'/>
      </auth>
      <source protocol='rbd' name='vms/db1-seed'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
  </devices>
</domain>"""


def test_rbd_disks_are_read_with_their_auth_monitors_and_boot_order():
    part = logic.owned(RBD_XML)
    assert part["cpu_model"] == "host-model"
    root, seed = part["disks"]
    assert root == {"path": None, "rbd": {"pool": "vms", "image": "db1-root"}, "format": "raw", "bus": "virtio",
                    "readonly": False, "target": "vda", "boot_order": 1,
                    "auth": {"user": "hypervisor", "usage": "client.hypervisor secret"},
                    "monitors": [{"name": "2001:db8::10", "port": "6789"}, {"name": "stor2", "port": None}]}
    assert seed["auth"] == {"user": "hypervisor", "uuid": "6a1e1b6c-58a5-5d6f-9e1f-2d7b0c3e4f51"}
    assert seed["readonly"] and seed["monitors"] == []


def test_rbd_disks_and_seed_from_parameters_round_trip():
    params = {"name": "db1", "virt_type": "kvm", "vcpus": 2, "memory": 512,
              "disks": [{"rbd": {"pool": "vms", "image": "db1-root"}, "boot_order": 1}],
              "seed": {"rbd": {"pool": "vms", "image": "db1-seed"}},
              "ceph": {"user": "client.hypervisor", "monitors": ["[2001:db8::10]:6789", "stor2"]}}
    target = logic.resolve(logic.wanted(params), None)
    xml = logic.apply(logic.skeleton("db1"), target)
    part = logic.owned(xml)
    assert part == target
    assert part["cpu_model"] == "host-model"
    assert [disk["target"] for disk in part["disks"]] == ["vda", "vdb"]
    assert part["disks"][0] == logic.owned(RBD_XML)["disks"][0]
    assert part["disks"][1]["readonly"] and part["disks"][1]["rbd"] == {"pool": "vms", "image": "db1-seed"}
    # the same input against libvirt's rendering of it is no change
    assert logic.resolve(logic.wanted(dict(params, seed=None, disks=params["disks"])),
                         logic.owned(RBD_XML))["disks"][0] == logic.owned(RBD_XML)["disks"][0]
    secret = logic.wanted(dict(params, ceph={"secret": "6A1E1B6C-58A5-5D6F-9E1F-2D7B0C3E4F51"}))["disks"][0]["auth"]
    assert secret == {"user": "hypervisor", "uuid": "6a1e1b6c-58a5-5d6f-9e1f-2d7b0c3e4f51"}
    assert logic.rbd_disks(logic.wanted(params)) == [("disks[0].rbd", "vms", "db1-root"),
                                                     ("seed.rbd", "vms", "db1-seed")]


def test_seed_as_a_path_or_a_dict():
    by_path = logic.wanted({"name": "x", "seed": "/srv/s.iso"})["disks"][0]
    assert by_path == logic.wanted({"name": "x", "seed": {"path": "/srv/s.iso"}})["disks"][0]
    assert by_path["readonly"] and by_path["format"] == "raw" and by_path["target"] == "vda"


@pytest.mark.parametrize("model, element", [
    ("host-passthrough", '<cpu mode="host-passthrough" />'),
    ("Haswell-noTSX", '<cpu mode="custom" match="exact"><model fallback="forbid">Haswell-noTSX</model></cpu>'),
])
def test_cpu_model_is_set_and_read_back(model, element):
    target = logic.resolve(logic.wanted(dict(PARAMS, cpu_model=model)), OWNED)
    xml = logic.apply(LIBVIRT_XML, target)
    assert element in re.sub(r">\s+<", "><", xml) and xml.count("<cpu") == 1
    assert logic.owned(xml)["cpu_model"] == model


def test_new_kvm_instances_get_host_model_and_tcg_ones_qemus_default():
    assert logic.resolve(logic.wanted({"name": "x", "virt_type": "kvm"}), None)["cpu_model"] == "host-model"
    assert logic.resolve(logic.wanted({"name": "x", "virt_type": "qemu"}), None)["cpu_model"] is None
    # an existing instance keeps what it has
    assert logic.resolve(logic.wanted({"name": "web1"}), OWNED)["cpu_model"] == "qemu64"


def test_rbd_errors_are_traced_to_the_disk():
    want = logic.wanted({"name": "x", "disks": [{"path": "/a"}, {"rbd": {"pool": "vms", "image": "x-root"}}]})
    assert logic.parameter_of_error("error reading header from vms/x-root: No such file", want) == "disks[1].rbd"
    assert logic.parameter_of_error("secret 'client.hypervisor secret' not found", want) == "ceph.secret"


def test_max_vcpus_is_the_machine_types_limit_from_the_domain_capabilities():
    assert logic.max_vcpus("<domainCapabilities><vcpu max='255'/></domainCapabilities>") == 255
    assert logic.max_vcpus("<domainCapabilities><path>/usr/bin/qemu</path></domainCapabilities>") is None
