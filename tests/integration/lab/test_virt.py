"""Guests under libvirt in a lab host: the busybox guest boots by direct
kernel boot under TCG, prints its marker, and answers on the host's bridge."""

from xml.etree import ElementTree

from labhosts import images, lab
from virt import Nic

MAC = "52:54:00:00:7e:01"


def test_busybox_guest_boots_and_its_nic_works(hypervisor):
    guest = images.busybox(lab.cache_dir(), log=lambda _msg: None)
    hypervisor.bridge("br-smoke", ["2001:db8:7e::1/64"])
    home = hypervisor.guest_dir("smoke")
    kernel = hypervisor.copy_in(guest["kernel"], home + "/vmlinuz")
    initrd = hypervisor.copy_in(guest["initrd"], home + "/initrd.img")
    domain = hypervisor.define("smoke", kernel, initrd, guest["cmdline"] + " hardway.addr=2001:db8:7e::10/64",
                               nics=[Nic("br-smoke", MAC)], memory_mib=256)
    assert ElementTree.fromstring(domain.xml).get("type") == "qemu"
    try:
        domain.start()
        line = domain.wait_console(guest["marker"] + ".*", timeout=120).group(0)
        assert "mac=" + MAC in line and "2001:db8:7e::10/64" in line, line
        ping = hypervisor.run("ping -6 -n -c 1 -W 2 2001:db8:7e::10", check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        domain.remove()
        hypervisor.run("ip link del br-smoke", check=False)
