"""Pure logic of the cluster inventory: hypervisor entries, instance records
from domain XML, merging hypervisors, host variables and group names."""

import json

import pytest

from ansible_collections.hardway.cloud.plugins.module_utils import cluster_state as logic

METADATA = {"version": 1, "tenant": "acme", "instance": "web1", "flavor": "small", "image": "debian12",
            "networks": [{"name": "net100", "prefix": "2001:db8:100::/64"},
                         {"name": "net200", "prefix": "2001:db8:200::/64"}],
            "owner": "ops"}


def libvirt_xml(metadata="default", raw=None):
    """A domain as the qemu driver returns a running kvm_instance VM: RBD root
    and seed (read-only), a local data disk, two bridge NICs, a network NIC
    and a cdrom that are not the module's; ``metadata`` None: without the
    element."""
    metadata = METADATA if metadata == "default" else metadata
    text = raw if raw is not None else json.dumps(metadata, sort_keys=True)
    element = ("<metadata><hardway:instance xmlns:hardway=\"https://hardway.cloud/xmlns/instance/1\">%s"
               "</hardway:instance></metadata>" % text) if (metadata is not None or raw is not None) else ""
    return """<domain type='kvm' id='7'>
  <name>web1</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  %s
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><kernel>/srv/vmlinuz</kernel></os>
  <devices>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <auth username='hypervisor'><secret type='ceph' usage='client.hypervisor secret'/></auth>
      <source protocol='rbd' name='vms/acme-web1' index='3'><host name='fd00::21' port='6789'/></source>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/acme-web1-data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='rbd' name='vms/acme-web1-seed'/>
      <target dev='vdc' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='file' device='cdrom'>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'><source network='default'/><mac address='52:54:00:00:00:01'/></interface>
    <interface type='bridge'>
      <mac address='02:00:F0:A9:C4:4E'/>
      <source bridge='br100'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
    </interface>
    <interface type='bridge'>
      <mac address='02:11:22:33:44:55'/>
      <source bridge='br200'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>""" % element


def test_a_tenant_vm_record():
    record = logic.instance(libvirt_xml(), 1)
    assert record == {
        "name": "web1", "uuid": "4dea22b3-1d52-d8f3-2516-782e98ab3fa0", "state": "running",
        "tenant": "acme", "instance": "web1", "flavor": "small", "image": "debian12", "extra": {"owner": "ops"},
        "vcpus": 2, "memory": 1024,
        "networks": [
            {"name": "net100", "prefix": "2001:db8:100::/64", "bridge": "br100", "mac": "02:00:f0:a9:c4:4e",
             "address": "2001:db8:100::f0ff:fea9:c44e"},
            {"name": "net200", "prefix": "2001:db8:200::/64", "bridge": "br200", "mac": "02:11:22:33:44:55",
             "address": "2001:db8:200:0:11:22ff:fe33:4455"}],
        "macs": ["02:00:f0:a9:c4:4e", "02:11:22:33:44:55"],
        "addresses": ["2001:db8:100::f0ff:fea9:c44e", "2001:db8:200:0:11:22ff:fe33:4455"],
        "address": "2001:db8:100::f0ff:fea9:c44e",
        "volumes": ["vms/acme-web1", "/var/lib/libvirt/images/acme-web1-data.qcow2"],
        "seed": "vms/acme-web1-seed",
        "problems": [],
    }


def test_records_of_a_hypervisor():
    records, warnings = logic.instances("hv1", [(libvirt_xml(), 1), (libvirt_xml(None), 1),
                                                (libvirt_xml(raw="{x").replace("web1", "bad&amp;&lt;&#233;&#x4e2d;1"), 5)])
    assert [(record["name"], record["hypervisor"]) for record in records] == [("web1", "hv1")]
    assert "problems" not in records[0]
    assert warnings == ["domain bad&<\u00e9\u4e2d1 on hypervisor hv1 is left out: its hardway metadata is not JSON: Expecting "
                        "property name enclosed in double quotes: line 1 column 2 (char 1)"]


def test_the_designs_example_address():
    metadata = dict(METADATA, networks=[{"name": "n", "prefix": "2a0a:e5c1:111:888::/64"}])
    record = logic.instance(libvirt_xml(metadata), 1)
    assert record["address"] == "2a0a:e5c1:111:888:0:f0ff:fea9:c44e"


def test_the_address_is_that_of_the_first_network_with_a_prefix():
    metadata = dict(METADATA, networks=[{"name": "net100"}, {"name": "net200", "prefix": "2001:db8:200::/64"}])
    record = logic.instance(libvirt_xml(metadata), 5)
    assert record["address"] == "2001:db8:200:0:11:22ff:fe33:4455"
    # a prefix without addresses (not a /64) does not count either
    metadata = dict(METADATA, networks=[{"name": "net100", "prefix": "2001:db8:100::/48"},
                                        {"name": "net200", "prefix": "2001:db8:200::/64"}])
    record = logic.instance(libvirt_xml(metadata), 5)
    assert record["address"] == "2001:db8:200:0:11:22ff:fe33:4455"
    assert record["addresses"] == ["2001:db8:200:0:11:22ff:fe33:4455"]
    assert record["networks"][0]["address"] is None and record["state"] == "shut off"
    assert "ansible_host" not in logic.hostvars(logic.instance(libvirt_xml(dict(METADATA, networks=[])), 1))


def test_networks_are_tolerant():
    # names alone, fewer networks than NICs, no networks at all, a bad prefix
    record = logic.instance(libvirt_xml(dict(METADATA, networks=["net100"])), 1)
    assert [(nic["name"], nic["bridge"], nic["address"]) for nic in record["networks"]] == \
        [("net100", "br100", None), (None, "br200", None)]
    assert record["address"] is None and record["problems"] == []
    record = logic.instance(libvirt_xml({"tenant": "acme"}), 1)
    assert record["flavor"] is None and [nic["name"] for nic in record["networks"]] == [None, None]
    record = logic.instance(libvirt_xml(dict(METADATA, networks=[{"name": "v4", "prefix": "192.0.2.0/24"}, 7])), 1)
    assert record["address"] is None and record["networks"][0]["prefix"] == "192.0.2.0/24"
    assert record["problems"][0].startswith("metadata networks[1] is not a dict")
    assert record["problems"][1].startswith("networks[0].prefix: ")
    record = logic.instance(libvirt_xml(dict(METADATA, networks="net100")), 1)
    assert record["problems"] == ["metadata networks is not a list; ignored"]


def test_domains_without_the_metadata_are_not_instances():
    assert logic.instance(libvirt_xml(None), 1) is None
    other = libvirt_xml(None).replace("<devices>", "<metadata><x:a xmlns:x='urn:x'>{}</x:a></metadata><devices>")
    assert logic.instance(other, 1) is None


@pytest.mark.parametrize("raw, message", [
    ("{not json", "is not JSON"),
    ("[1, 2]", "not a JSON object but list"),
    ("\"acme\"", "not a JSON object but str"),
])
def test_unusable_metadata_is_an_error(raw, message):
    with pytest.raises(logic.DomainError, match=message):
        logic.instance(libvirt_xml(raw=raw), 1)


def test_an_unknown_metadata_version_is_read_as_version_1():
    record = logic.instance(libvirt_xml(dict(METADATA, version=2)), 1)
    assert record["tenant"] == "acme" and record["extra"] == {"owner": "ops"}
    assert record["problems"] == ["its hardway metadata has version 2, read as version 1"]


def test_empty_metadata_is_an_empty_object():
    # as kvm_instance reads it back
    record = logic.instance(libvirt_xml(raw=""), 1)
    assert record["tenant"] is None and record["extra"] == {}


def test_xml_that_does_not_parse_is_an_error():
    with pytest.raises(logic.DomainError, match="does not parse"):
        logic.instance("<domain><name>x</name><metadata xmlns:h='https://hardway.cloud/xmlns/instance/1'>", 1)


@pytest.mark.parametrize("code, name", [(0, "no state"), (1, "running"), (2, "idle"), (3, "paused"),
                                        (4, "in shutdown"), (5, "shut off"), (6, "crashed"), (7, "pmsuspended"),
                                        (42, "unknown 42")])
def test_state_names(code, name):
    assert logic.state_name(code) == name


@pytest.mark.parametrize("uri, host", [
    ("qemu+ssh://root@hv1/system", "hv1"),
    ("qemu+ssh://hv1.example.org:2222/system?no_tty=1", "hv1.example.org"),
    ("qemu+libssh://root@[fd00::12]/system?keyfile=/k&known_hosts=/kh", "fd00::12"),
    ("qemu+tcp://[fd00::12]:16509/system", "fd00::12"),
    ("qemu+tls://192.0.2.7/system", "192.0.2.7"),
    ("test:///tmp/node.xml", None),
    ("qemu:///system", None),
    ("qemu+unix:///system?socket=/run/x.sock", None),
])
def test_uri_host(uri, host):
    assert logic.uri_host(uri) == host


def test_hypervisor_entries():
    assert logic.hypervisors(["qemu+ssh://root@hv1/system", {"name": "local", "uri": "qemu:///system"},
                              {"uri": "test:///n.xml", "timeout": 2}], 30) == [
        {"name": "hv1", "uri": "qemu+ssh://root@hv1/system", "timeout": 30},
        {"name": "local", "uri": "qemu:///system", "timeout": 30},
        {"name": None, "uri": "test:///n.xml", "timeout": 2}]


@pytest.mark.parametrize("entries, message", [
    ([], "hypervisors: must be a list"),
    ("qemu:///system", "hypervisors: must be a list"),
    ([7], r"hypervisors\[0\]: 7 is neither"),
    (["qemu:///system", "hv2"], r"hypervisors\[1\].uri: 'hv2' is not a libvirt URI"),
    ([{"name": "hv1"}], r"hypervisors\[0\].uri: None"),
    ([{"uri": "qemu:///system", "host": "x"}], r"hypervisors\[0\].host: is not a key"),
    ([{"uri": "qemu:///system", "name": ""}], r"hypervisors\[0\].name"),
    ([{"uri": "qemu:///system", "timeout": 0}], r"hypervisors\[0\].timeout"),
    (["qemu+ssh://hv1/system", "qemu+ssh://root@hv1/system"], r"hypervisors\[1\]: the name hv1 is also"),
    (["qemu:///system", "qemu:///system"], r"hypervisors\[1\].uri: qemu:///system is also"),
])
def test_bad_hypervisor_entries(entries, message):
    with pytest.raises(ValueError, match=message):
        logic.hypervisors(entries, 30)


def test_bad_timeout():
    with pytest.raises(ValueError, match="timeout: 0"):
        logic.hypervisors(["qemu:///system"], 0)


def test_merge_keeps_the_first_of_a_name_in_hypervisor_order():
    kept, warnings = logic.merge([[{"name": "a", "hypervisor": "hv2"}, {"name": "b", "n": 2, "hypervisor": "hv2"}],
                                  [{"name": "b", "n": 3, "hypervisor": "hv1"}, {"name": "c", "hypervisor": "hv1"}]])
    assert kept == [{"name": "a", "hypervisor": "hv2"}, {"name": "b", "n": 2, "hypervisor": "hv2"},
                    {"name": "c", "hypervisor": "hv1"}]
    assert warnings == ["domain b is on hypervisor hv2 and on hv1: kept the one on hv2"]


def test_hostvars_and_groups():
    record = dict(logic.instance(libvirt_xml(), 3), hypervisor="hv1")
    hostvars = logic.hostvars(record)
    assert hostvars["ansible_host"] == "2001:db8:100::f0ff:fea9:c44e"
    assert sorted(hostvars) == sorted(["ansible_host"] + ["hardway_vm_" + key for key in (
        "tenant", "instance", "hypervisor", "state", "vcpus", "memory", "networks", "macs", "addresses", "volumes",
        "seed", "image", "flavor", "uuid", "extra")])
    assert hostvars["hardway_vm_state"] == "paused" and hostvars["hardway_vm_extra"] == {"owner": "ops"}
    assert logic.groups(record) == ["hardway_instances", "tenant_acme", "network_net100", "network_net200",
                                    "hypervisor_hv1", "state_paused"]
    # no tenant, the same network twice, a non-string name
    record = dict(record, tenant=None, state="shut off",
                  networks=[dict(record["networks"][0], name=5), dict(record["networks"][1], name=5)])
    assert logic.groups(record) == ["hardway_instances", "network_5", "hypervisor_hv1", "state_shut off"]
