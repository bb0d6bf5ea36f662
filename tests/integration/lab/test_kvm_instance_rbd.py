"""kvm_instance with its disks in Ceph: the project's Debian tenant image is
imported into RBD on the hypervisor (ceph_rbd_volume, as client.hypervisor,
through the hypervisor role's packages and key), its cloud-init seed is
written into another RBD image (cloudinit_seed), and the VM boots from them
through QEMU's RBD client with the key in the libvirt secret the hypervisor
role made. Cloud-init (on the RBD root) finishing with its data from the RBD seed proves both
images were read; removal with undefine_volumes removes both."""

import uuid

import pytest

from labhosts import images, lab
from module_runner import run_module
from test_kvm_instance import defined, inactive, module
from virt import Domain

NAME = "kvmt-rbd"
BRIDGE = "br-kvmt-rbd"
MAC = "52:54:00:77:00:20"


@pytest.fixture(scope="module")
def tenant(hypervisor):
    """The tenant image's kernel, initrd and qcow2 disk in the hypervisor host."""
    image = images.tenant(lab.cache_dir(), log=lambda _msg: None)
    home = hypervisor.guest_dir(NAME)
    hypervisor.bridge(BRIDGE)
    yield {"kernel": hypervisor.copy_in(image["kernel"], home + "/vmlinuz"),
           "initrd": hypervisor.copy_in(image["initrd"], home + "/initrd.img"),
           "qcow2": hypervisor.copy_in(image["qcow2"], home + "/root.qcow2"),
           "cmdline": image["cmdline"], "home": home}
    hypervisor.run("virsh -q destroy %s; virsh -q undefine %s; rm -rf %s; ip link del %s"
                   % (NAME, NAME, home, BRIDGE), check=False)


@pytest.fixture
def names(ceph):
    """Unique RBD image names in the cloud's vms pool, removed at the end."""
    made = {"root": "kvmt-root-" + uuid.uuid4().hex[:6], "seed": "kvmt-seed-" + uuid.uuid4().hex[:6]}
    yield made
    for image in made.values():
        ceph.rbd("rm", "--no-progress", "vms/" + image, check=False)


def test_a_vm_boots_from_rbd_root_and_seed_and_goes_with_its_volumes(hypervisor, ceph, tenant, names, tmp_path):
    imported = module(hypervisor, tmp_path, {"name": names["root"], "pool": "vms", "user": "hypervisor",
                                             "source": tenant["qcow2"]},
                      name="ceph_rbd_volume")
    assert imported["changed"] and not imported.get("failed"), imported
    seed = run_module("cloudinit_seed", dict(ceph.connection(), rbd={"pool": "vms", "image": names["seed"]},
                                             instance_id=NAME + "-1", hostname=NAME,
                                             network_config={"version": 2, "ethernets": {"eth0": {
                                                 "match": {"macaddress": MAC}, "set-name": "eth0",
                                                 "dhcp4": False, "dhcp6": False, "accept-ra": False,
                                                 "addresses": ["2001:db8:78::20/64"]}}}))
    assert seed["changed"] and not seed.get("failed"), seed

    args = {"name": NAME, "state": "running", "virt_type": "qemu", "memory": 512, "kernel": tenant["kernel"],
            "initrd": tenant["initrd"], "cmdline": tenant["cmdline"],
            "disks": [{"rbd": {"pool": "vms", "image": names["root"]}}],
            "seed": {"rbd": {"pool": "vms", "image": names["seed"]}},
            "interfaces": [{"bridge": BRIDGE, "mac": MAC}], "serial_log": tenant["home"] + "/serial.log",
            "shutdown_timeout": 0}
    first = module(hypervisor, tmp_path, args)
    assert first["changed"] and first["state"] == "running", first
    disks = inactive(hypervisor, NAME).findall("devices/disk")
    assert [d.find("source").get("name") for d in disks] == ["vms/" + names["root"], "vms/" + names["seed"]]
    assert {d.find("auth/secret").get("usage") for d in disks} == {"client.hypervisor secret"}
    # QEMU holds both images open: the cluster sees its watches
    for image in names.values():
        assert "watcher=" in ceph.rbd("status", "vms/" + image).stdout
    console = Domain(hypervisor, NAME, "", args["serial_log"])
    # cloud-init lives on the root file system, which is the RBD image (the VM
    # has no other disk but the seed), and read its data from the RBD seed (vdb)
    console.wait_console(r"Cloud-init v\. \S+ finished.*Datasource DataSourceNoCloud \[seed=/dev/vdb\]",
                         timeout=600)

    again = module(hypervisor, tmp_path, args)
    assert not again["changed"] and again["actions"] == [] and again["diff_lines"] == [], again

    gone = module(hypervisor, tmp_path, {"name": NAME, "state": "absent", "undefine_volumes": True})
    assert gone["actions"] == ["turn off %s" % NAME, "undefine %s" % NAME, "remove volume vms/%s" % names["root"],
                               "remove volume vms/%s" % names["seed"]], gone
    assert NAME not in defined(hypervisor)
    for image in names.values():
        assert ceph.rbd("info", "vms/" + image, check=False).returncode != 0


def test_a_missing_rbd_image_fails_naming_it_and_defines_nothing(hypervisor, tenant, tmp_path):
    result = module(hypervisor, tmp_path, {"name": NAME + "-bad", "virt_type": "qemu", "kernel": tenant["kernel"],
                                           "disks": [{"rbd": {"pool": "vms", "image": "kvmt-nowhere"}}]})
    assert result.get("failed") and result["parameter"] == "disks[0].rbd.image", result
    assert "kvmt-nowhere" in result["msg"]
    result = module(hypervisor, tmp_path, {"name": NAME + "-bad", "virt_type": "qemu", "kernel": tenant["kernel"],
                                           "disks": [{"rbd": {"pool": "nopool", "image": "x"}}]})
    assert result.get("failed") and result["parameter"] == "disks[0].rbd.pool", result
    assert NAME + "-bad" not in defined(hypervisor)
