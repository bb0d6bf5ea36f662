"""A seed built by cloudinit_seed boots the project's Debian cloud image under
libvirt (TCG, in a lab hypervisor host), and the guest proves cloud-init
consumed it: its host name, a file the user-data wrote, the authorised SSH key
(we log in with it), the static IPv6 address of the network-config, and
cloud-init's own schema check of the user-data it ran."""

import os
import subprocess

from labhosts import images, lab
from module_runner import run_module
from virt import Disk, Nic

MAC = "52:54:00:77:00:10"
GUEST = "2001:db8:77::10"
MARKER = "seeded-by-hardway"


def test_seed_boots_the_tenant_image_and_cloud_init_consumes_it(hypervisor, tmp_path):
    image = images.tenant(lab.cache_dir(), log=lambda _msg: None)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "first-boot", "-f", str(key)], check=True)
    public = (tmp_path / "id_ed25519.pub").read_text().strip()
    args = {
        "dest": str(tmp_path / "seed.iso"), "instance_id": "first-boot-1", "hostname": "web1",
        "ssh_authorized_keys": [public],
        "user_data": {"manage_etc_hosts": True,
                      "write_files": [{"path": "/var/lib/hardway/marker", "content": MARKER + "\n",
                                       "permissions": "0644"}]},
        "network_config": {"version": 2, "ethernets": {"eth0": {
            "match": {"macaddress": MAC}, "set-name": "eth0", "dhcp4": False, "dhcp6": False,
            "accept-ra": False, "addresses": [GUEST + "/64"]}}},
    }
    seed = run_module("cloudinit_seed", args)
    assert seed["changed"] and not seed.get("failed"), seed
    assert run_module("cloudinit_seed", args)["sha256"] == seed["sha256"]

    hypervisor.bridge("br-boot", ["2001:db8:77::1/64"])
    home = hypervisor.guest_dir("web1")
    kernel = hypervisor.copy_in(image["kernel"], home + "/vmlinuz")
    initrd = hypervisor.copy_in(image["initrd"], home + "/initrd.img")
    disk = hypervisor.copy_in(image["disk"], home + "/root.raw")
    seed_disk = hypervisor.copy_in(seed["dest"], home + "/seed.iso")
    guest_key = hypervisor.copy_in(str(key), home + "/id_ed25519")
    os.chmod(hypervisor.path(guest_key), 0o600)
    domain = hypervisor.define("web1", kernel, initrd, image["cmdline"],
                               disks=[Disk(disk), Disk(seed_disk, readonly=True)], nics=[Nic("br-boot", MAC)],
                               memory_mib=512)
    try:
        domain.start()
        domain.wait_console(r"Cloud-init v\. \S+ finished", timeout=600)

        def guest(command):
            return hypervisor.guest_ssh(GUEST, command, guest_key).stdout.strip()

        assert guest("hostname") == "web1"
        assert guest("cat /var/lib/hardway/marker") == MARKER
        assert guest("cat ~/.ssh/authorized_keys").splitlines() == [public]
        assert GUEST + "/64" in guest("ip -6 -o addr show dev eth0 scope global")
        assert guest("cat /proc/sys/net/ipv6/conf/eth0/accept_ra") == "0"
        status = hypervisor.guest_ssh(GUEST, "cloud-init status --long", guest_key, check=False)
        assert "status: done" in status.stdout, status.stdout + status.stderr
        # cloud-init's own check of the user-data it consumed (Debian's cloud-init 22.4)
        schema = hypervisor.guest_ssh(GUEST, "sudo cloud-init schema --system", guest_key, check=False)
        assert schema.returncode == 0 and "Valid cloud-config" in schema.stdout, schema.stdout + schema.stderr
        assert guest("sudo cloud-init query instance_id") == "first-boot-1"
    finally:
        domain.remove()
        hypervisor.run("ip link del br-boot", check=False)
