"""The cluster inventory plugin against libvirt's test driver: every
hypervisor is a test:///FILE.xml URI whose node file (written here, see
labhosts.testdriver) holds the domains, with the collection's metadata as
kvm_instance writes it and the states the test driver's runstate element gives
them."""

import importlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

libvirt = pytest.importorskip("libvirt")

from ansible.errors import AnsibleParserError  # noqa: E402
from ansible.inventory.data import InventoryData  # noqa: E402
from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.plugins.loader import init_plugin_loader, inventory_loader  # noqa: E402
from ansible.template import Templar, is_trusted_as_template, trust_as_template  # noqa: E402
from ansible.utils.collection_loader import AnsibleCollectionConfig  # noqa: E402
from ansible.utils.display import Display  # noqa: E402
from labhosts.testdriver import PAUSED, SHUTOFF, domain, node, tenant_vm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTIONS = os.path.join(ROOT, ".tmp", "collections")


def collection_loader():
    """Ansible's collection loader, as ansible-inventory installs it: the
    plugin loader finds hardway.cloud.cluster only through it, and only for a
    collection it imported itself. Test modules collected before this one
    imported the collection as plain packages (conftest's sys.path), so those
    modules are forgotten first; the test modules keep the ones they have."""
    if AnsibleCollectionConfig.collection_finder is None:
        for name in [name for name in sys.modules if name.split(".")[0] == "ansible_collections"]:
            del sys.modules[name]
        init_plugin_loader([COLLECTIONS])
    return importlib.import_module("ansible_collections.hardway.cloud.plugins.inventory.cluster")


cluster = collection_loader()


@pytest.fixture
def warnings(monkeypatch):
    found = []
    monkeypatch.setattr(Display, "warning", lambda self, msg, *args, **kwargs: found.append(msg))
    return found


NET100 = ("net100", "2001:db8:100::/64")
NET200 = ("net200", "2001:db8:200::/64")


@pytest.fixture
def cloud(tmp_path):
    """Two hypervisors: hv1 with two acme VMs (one shut off) and a VM that is
    not the cloud's, hv2 with a globex VM on two networks, paused."""
    hv1 = node(tmp_path / "hv1.xml",
               domain("web1", {"tenant": "acme", "instance": "web1", "flavor": "small", "image": "debian12",
                               "networks": [{"name": "net100", "prefix": "2a0a:e5c1:111:888::/64"}],
                               "placement": {"zone": "a"}},
                      nics=[("br100", "02:00:f0:a9:c4:4e")],
                      disks=[("rbd", "vms/acme-web1", False), ("file", "/var/lib/hardway/data.qcow2", False),
                             ("rbd", "vms/acme-web1-seed", True)],
                      vcpus=2, memory=1024, uuid="4dea22b3-1d52-d8f3-2516-782e98ab3fa0"),
               tenant_vm("db1", "acme", [NET100], state=SHUTOFF, flavor="large"),
               domain("monitoring", nics=[("br0", "52:54:00:00:00:01")]))
    hv2 = node(tmp_path / "hv2.xml", tenant_vm("app1", "globex", [NET100, NET200], state=PAUSED))
    return tmp_path, [{"name": "hv1", "uri": hv1}, {"name": "hv2", "uri": hv2}]


def config(directory, hypervisors, name="lab.cluster.yml", **options):
    path = directory / name
    path.write_text(yaml.safe_dump(dict({"plugin": "hardway.cloud.cluster", "hypervisors": hypervisors}, **options)))
    return str(path)


def manager(path):
    """The inventory as Ansible builds it from the source ``path``."""
    return InventoryManager(DataLoader(), sources=[path])


def plugin_parse(path):
    """The plugin's parse alone (its exceptions are not turned into warnings)."""
    plugin = inventory_loader.get("hardway.cloud.cluster")
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), path)
    return inventory


def members(inventory):
    return dict((name, sorted(host.name for host in group.get_hosts()))
                for name, group in inventory.groups.items() if name not in ("all", "ungrouped"))


def test_hostvars_and_groups_of_two_hypervisors(cloud, warnings):
    directory, hypervisors = cloud
    inventory = manager(config(directory, hypervisors))
    assert sorted(inventory.hosts) == ["app1", "db1", "web1"]
    web1 = inventory.get_host("web1").vars
    assert dict((key, value) for key, value in web1.items() if not key.startswith("inventory_")) == {
        "ansible_host": "2a0a:e5c1:111:888:0:f0ff:fea9:c44e",
        "hardway_vm_tenant": "acme", "hardway_vm_instance": "web1", "hardway_vm_flavor": "small",
        "hardway_vm_image": "debian12", "hardway_vm_hypervisor": "hv1", "hardway_vm_state": "running",
        "hardway_vm_vcpus": 2, "hardway_vm_memory": 1024, "hardway_vm_uuid": "4dea22b3-1d52-d8f3-2516-782e98ab3fa0",
        "hardway_vm_networks": [{"name": "net100", "prefix": "2a0a:e5c1:111:888::/64", "bridge": "br100",
                                 "mac": "02:00:f0:a9:c4:4e", "address": "2a0a:e5c1:111:888:0:f0ff:fea9:c44e"}],
        "hardway_vm_macs": ["02:00:f0:a9:c4:4e"],
        "hardway_vm_addresses": ["2a0a:e5c1:111:888:0:f0ff:fea9:c44e"],
        "hardway_vm_volumes": ["vms/acme-web1", "/var/lib/hardway/data.qcow2"],
        "hardway_vm_seed": "vms/acme-web1-seed",
        "hardway_vm_extra": {"placement": {"zone": "a"}},
    }
    app1 = inventory.get_host("app1").vars
    assert app1["hardway_vm_state"] == "paused" and app1["hardway_vm_hypervisor"] == "hv2"
    assert [nic["name"] for nic in app1["hardway_vm_networks"]] == ["net100", "net200"]
    assert app1["ansible_host"] == app1["hardway_vm_addresses"][0] and len(app1["hardway_vm_addresses"]) == 2
    assert inventory.get_host("db1").vars["hardway_vm_state"] == "shut off"
    assert members(inventory) == {
        "hardway_instances": ["app1", "db1", "web1"],
        "tenant_acme": ["db1", "web1"], "tenant_globex": ["app1"],
        "network_net100": ["app1", "db1", "web1"], "network_net200": ["app1"],
        "hypervisor_hv1": ["db1", "web1"], "hypervisor_hv2": ["app1"],
        "state_running": ["web1"], "state_shut_off": ["db1"], "state_paused": ["app1"],
    }
    assert warnings == []


def test_hypervisor_names_come_from_the_uri_or_libvirt(tmp_path, warnings):
    uri = node(tmp_path / "n.xml", tenant_vm("web1", "acme", [NET100]))
    inventory = manager(config(tmp_path, [uri]))
    hostname = libvirt.openReadOnly(uri).getHostname()
    assert inventory.get_host("web1").vars["hardway_vm_hypervisor"] == hostname


def test_bad_metadata_is_warned_and_skipped(tmp_path, warnings):
    uri = node(tmp_path / "n.xml", tenant_vm("web1", "acme", [NET100]), domain("broken", raw="{tenant: acme"),
               domain("listed", raw="[\"acme\"]"), domain("foreign"),
               domain("odd", {"tenant": "acme", "networks": [{"name": "v4", "prefix": "192.0.2.0/24"}]},
                      nics=[("br4", "02:00:00:00:00:04")]))
    inventory = manager(config(tmp_path, [{"name": "hv1", "uri": uri}]))
    assert sorted(inventory.hosts) == ["odd", "web1"]
    assert "ansible_host" not in inventory.get_host("odd").vars
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("hardway.cloud.cluster: domain broken on hypervisor hv1 is left out: its hardway "
                                  "metadata is not JSON")
    assert "domain listed on hypervisor hv1 is left out: its hardway metadata is not a JSON object" in warnings[1]
    assert "domain odd on hypervisor hv1: networks[0].prefix" in warnings[2]


def test_a_name_on_two_hypervisors_is_kept_from_the_first(tmp_path, warnings):
    # hv2 answers first (it is small), but hv1 comes first in the option
    hv1 = node(tmp_path / "hv1.xml", *[tenant_vm("vm%d" % index, "acme", [NET100]) for index in range(50)])
    hv2 = node(tmp_path / "hv2.xml", tenant_vm("vm7", "globex", [NET200]))
    inventory = manager(config(tmp_path, [{"name": "hv1", "uri": hv1}, {"name": "hv2", "uri": hv2}]))
    assert len(inventory.hosts) == 50
    assert inventory.get_host("vm7").vars["hardway_vm_tenant"] == "acme"
    assert "tenant_globex" not in inventory.groups
    assert warnings == ["hardway.cloud.cluster: domain vm7 is on hypervisor hv1 and on hv2: kept the one on hv1"]


def test_an_unreachable_hypervisor_is_warned_and_the_rest_listed(cloud, warnings):
    directory, hypervisors = cloud
    missing = "test:///%s" % (directory / "nonexistent.xml")
    inventory = manager(config(directory, hypervisors + [{"name": "hv3", "uri": missing}]))
    assert sorted(inventory.hosts) == ["app1", "db1", "web1"]
    assert len(warnings) == 1
    assert warnings[0].startswith("hardway.cloud.cluster: hypervisor hv3 (%s) is unreachable: libvirt error: " % missing)
    assert "nonexistent.xml" in warnings[0].split("libvirt error: ")[1]


def test_unreachable_fail_fails_naming_the_hypervisor(cloud, warnings):
    directory, hypervisors = cloud
    missing = "test:///%s" % (directory / "nonexistent.xml")
    path = config(directory, hypervisors + [{"name": "hv3", "uri": missing}], unreachable="fail")
    with pytest.raises(AnsibleParserError, match=r"hypervisor hv3 \(test:///.*nonexistent.xml\) is unreachable: "
                                                 r"libvirt error: "):
        plugin_parse(path)


def test_a_hypervisor_that_does_not_answer_in_time_is_unreachable(cloud, warnings):
    """A libvirt daemon socket that accepts the connection and never answers."""
    directory, hypervisors = cloud
    path = str(directory / "mute.sock")
    mute = socket.socket(socket.AF_UNIX)
    mute.bind(path)
    mute.listen(4)
    try:
        uri = "qemu+unix:///system?socket=" + path
        started = time.monotonic()
        inventory = manager(config(directory, [{"name": "mute", "uri": uri, "timeout": 1}] + hypervisors))
        elapsed = time.monotonic() - started
    finally:
        mute.close()
    assert sorted(inventory.hosts) == ["app1", "db1", "web1"]
    assert warnings == ["hardway.cloud.cluster: hypervisor mute (%s) is unreachable: no answer within its timeout "
                        "of 1 seconds; its VMs are left out of the inventory" % uri]
    assert elapsed < 10


def test_more_hypervisors_than_workers(tmp_path, warnings):
    uris = [node(tmp_path / ("hv%d.xml" % index), tenant_vm("vm%d" % index, "acme", [NET100])) for index in range(5)]
    inventory = manager(config(tmp_path, [{"name": "hv%d" % index, "uri": uri} for index, uri in enumerate(uris)],
                               workers=2))
    assert sorted(inventory.hosts) == ["vm%d" % index for index in range(5)]
    assert [inventory.get_host("vm%d" % index).vars["hardway_vm_hypervisor"] for index in range(5)] == \
        ["hv%d" % index for index in range(5)]


def test_compose_groups_and_keyed_groups(cloud, warnings):
    directory, hypervisors = cloud
    inventory = manager(config(directory, hypervisors,
                               compose={"ansible_user": "'debian'", "zone": "hardway_vm_extra.placement.zone"},
                               groups={"stopped": "hardway_vm_state != 'running'"},
                               keyed_groups=[{"key": "hardway_vm_flavor", "prefix": "flavor"},
                                             {"key": "hardway_vm_networks | map(attribute='bridge')",
                                              "prefix": "bridge"}]))
    assert inventory.get_host("web1").vars["ansible_user"] == "debian"
    assert inventory.get_host("web1").vars["zone"] == "a"
    assert "zone" not in inventory.get_host("db1").vars  # not strict: an undefined key is skipped
    groups = members(inventory)
    assert groups["stopped"] == ["app1", "db1"]
    assert groups["flavor_small"] == ["app1", "web1"] and groups["flavor_large"] == ["db1"]
    assert groups["bridge_br100"] == ["web1"] and groups["bridge_br_net200"] == ["app1"]


def test_strict_fails_on_a_bad_compose(cloud, warnings):
    directory, hypervisors = cloud
    path = config(directory, hypervisors, strict=True, compose={"zone": "hardway_vm_extra.placement.zone"})
    with pytest.raises(Exception, match="Could not set zone for host db1"):
        plugin_parse(path)


def strings(value):
    """Every string in ``value``, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_values_from_hypervisors_are_unsafe(tmp_path, warnings):
    uri = node(tmp_path / "n.xml", domain("web1", {"tenant": "acme", "flavor": "{{ 6 * 7 }}",
                                                   "networks": [{"name": "{{ lookup('pipe', 'id') }}"}]},
                                          nics=[("br0", "02:00:00:00:00:01")]))
    inventory = manager(config(tmp_path, [{"name": "hv1", "uri": uri}]))
    hostvars = inventory.get_host("web1").vars
    for key in ("hardway_vm_flavor", "hardway_vm_tenant", "hardway_vm_hypervisor", "hardway_vm_state"):
        assert isinstance(hostvars[key], str) and not is_trusted_as_template(hostvars[key]), key
    assert not is_trusted_as_template(hostvars["hardway_vm_networks"][0]["name"])
    # and every other string the plugin set, however deep
    found = list(strings(dict((key, value) for key, value in hostvars.items() if not key.startswith("inventory_"))))
    assert len(found) > 10 and not [text for text in found if is_trusted_as_template(text)]
    templar = Templar(loader=DataLoader(), variables=hostvars)
    assert templar.template(trust_as_template("{{ hardway_vm_flavor }}")) == "{{ 6 * 7 }}"
    assert templar.template(trust_as_template("{{ hardway_vm_networks[0].name }}")) == "{{ lookup('pipe', 'id') }}"


def test_a_cached_run_makes_no_libvirt_connection(cloud, warnings, monkeypatch):
    directory, hypervisors = cloud
    path = config(directory, hypervisors, cache=True, cache_plugin="ansible.builtin.jsonfile",
                  cache_connection=str(directory / "cache"))
    first = manager(path)
    assert sorted(first.hosts) == ["app1", "db1", "web1"]
    assert os.listdir(str(directory / "cache"))
    # the hypervisors are gone, and libvirt would fail if asked
    for name in ("hv1.xml", "hv2.xml"):
        (directory / name).unlink()

    def no_connection(uri):
        raise AssertionError("connected to %s" % uri)

    monkeypatch.setattr(cluster.libvirt, "openReadOnly", no_connection)
    second = manager(path)
    assert sorted(second.hosts) == ["app1", "db1", "web1"] and warnings == []
    assert members(second) == members(first)
    assert second.get_host("web1").vars == first.get_host("web1").vars
    assert not is_trusted_as_template(second.get_host("web1").vars["hardway_vm_tenant"])
    # a refresh (meta: refresh_inventory, --flush-cache) asks the hypervisors
    monkeypatch.undo()
    monkeypatch.setattr(Display, "warning", lambda self, msg, *args, **kwargs: warnings.append(msg))
    third = InventoryManager(DataLoader(), sources=[path], cache=False)
    assert sorted(third.hosts) == [] and len(warnings) == 2


def test_a_partial_result_is_not_used_from_the_cache(cloud, warnings):
    directory, hypervisors = cloud
    hv2 = directory / "hv2.xml"
    kept = hv2.read_text()
    hv2.unlink()
    path = config(directory, hypervisors, cache=True, cache_plugin="ansible.builtin.jsonfile",
                  cache_connection=str(directory / "cache"))
    assert sorted(manager(path).hosts) == ["db1", "web1"] and len(warnings) == 1
    hv2.write_text(kept)
    assert sorted(manager(path).hosts) == ["app1", "db1", "web1"] and len(warnings) == 1


def test_without_the_libvirt_bindings(cloud, monkeypatch):
    directory, hypervisors = cloud
    monkeypatch.setattr(cluster, "libvirt", None)
    with pytest.raises(AnsibleParserError, match="install python3-libvirt .* or libvirt-python"):
        plugin_parse(config(directory, hypervisors))


@pytest.mark.parametrize("hypervisors, message", [
    ([], "hypervisors: must be a list"),
    ([{"name": "hv1"}], r"hypervisors\[0\].uri: None is not a libvirt URI"),
    (["qemu:///system", {"uri": "qemu:///session", "timeout": -1}], r"hypervisors\[1\].timeout"),
])
def test_bad_configuration_names_the_entry(tmp_path, hypervisors, message):
    with pytest.raises(AnsibleParserError, match=message):
        plugin_parse(config(tmp_path, hypervisors))


def test_hypervisor_uris_are_templated(tmp_path, warnings, monkeypatch):
    uri = node(tmp_path / "n.xml", tenant_vm("web1", "acme", [NET100]))
    monkeypatch.setenv("HARDWAY_TEST_NODE", uri.split("test://", 1)[1])
    inventory = manager(config(tmp_path, [{"name": "hv1", "uri": "test://{{ lookup('env', 'HARDWAY_TEST_NODE') }}"}]))
    assert list(inventory.hosts) == ["web1"]


@pytest.mark.parametrize("name, accepted", [
    ("lab.cluster.yml", True), ("lab.cluster.yaml", True), ("cluster.yml", True), ("cluster.yaml", True),
    ("lab.yml", False), ("cluster.json", False), ("lab.cluster.yml.bak", False), ("clusters.yml", False),
])
def test_verify_file(tmp_path, name, accepted):
    (tmp_path / name).write_text("plugin: hardway.cloud.cluster\n")
    plugin = inventory_loader.get("hardway.cloud.cluster")
    assert plugin.verify_file(str(tmp_path / name)) is accepted
    assert plugin.verify_file(str(tmp_path / "missing.cluster.yml")) is False


def ansible(tool, *args, **env):
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), tool)] + list(args), capture_output=True,
                          text=True, timeout=120, check=False,
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                                   ANSIBLE_NOCOLOR="1", ANSIBLE_INVENTORY_UNPARSED_FAILED="1", **env))
    return proc


def test_ansible_inventory_list_and_graph(cloud):
    directory, hypervisors = cloud
    path = config(directory, hypervisors + ["test:///%s" % (directory / "nonexistent.xml")])
    listed = ansible("ansible-inventory", "-i", path, "--list")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert sorted(data["_meta"]["hostvars"]) == ["app1", "db1", "web1"]
    assert data["hardway_instances"]["hosts"] == ["db1", "web1", "app1"]  # hypervisors in order, names sorted
    assert sorted(data["tenant_acme"]["hosts"]) == ["db1", "web1"]
    web1 = data["_meta"]["hostvars"]["web1"]
    # ansible-inventory marks what is not trusted as a template
    assert web1["hardway_vm_tenant"] == {"__ansible_unsafe": "acme"}
    assert web1["ansible_host"] == {"__ansible_unsafe": "2a0a:e5c1:111:888:0:f0ff:fea9:c44e"}
    assert "is unreachable: libvirt error:" in listed.stderr and "nonexistent.xml" in listed.stderr
    graph = ansible("ansible-inventory", "-i", path, "--graph")
    assert graph.returncode == 0, graph.stderr
    assert "@tenant_globex:\n  |  |--app1" in graph.stdout and "@state_shut_off:\n  |  |--db1" in graph.stdout


def test_ansible_inventory_fails_with_unreachable_fail(cloud):
    directory, hypervisors = cloud
    path = config(directory, hypervisors + [{"name": "hv3", "uri": "test:///%s" % (directory / "nonexistent.xml")}],
                  unreachable="fail")
    listed = ansible("ansible-inventory", "-i", path, "--list")
    assert listed.returncode != 0
    assert "hypervisor hv3" in listed.stderr and "is unreachable" in listed.stderr
