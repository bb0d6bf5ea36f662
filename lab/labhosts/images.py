"""Guest images for tests that boot VMs under libvirt (built once, cached).

Both kinds boot by direct kernel boot with Debian's cloud kernel, so no boot
loader is involved and the same kernel serves both:

- the tenant image: a real Debian bookworm that configures itself on first
  boot with cloud-init from a NoCloud seed, as a tenant's VM would. A raw ext4
  disk (root=/dev/vda, no partition table), a compressed qcow2 of it (what an
  image store imports), and the kernel and initrd taken out of it.
- the busybox guest: an initramfs holding busybox only. It reaches userspace
  under TCG in seconds instead of minutes, for tests that only need "the VM
  runs and its NIC works".

Each image lives in <cache>/images/<name>-<key>/, the key a hash of everything
that goes into it, built under the same lock-and-marker scheme as the lab
rootfs (rootfs.cached).
"""

import glob
import gzip
import io
import json
import os
import shutil
import stat

from . import rootfs
from .errors import LabError
from .system import run

# The cloud kernel has virtio drivers but no AHCI: every disk is virtio, and
# the NoCloud seed too. net.ifnames=0 keeps the first NIC named eth0.
KERNEL_CMDLINE = "console=ttyS0 root=/dev/vda rw net.ifnames=0"

TENANT_PACKAGES = [
    "cloud-init",
    "ifupdown",              # the network renderer cloud-init picks on Debian
    "initramfs-tools",       # the initrd for direct kernel boot
    "iproute2",              # cloud-init and ifupdown configure links with ip
    "linux-image-cloud-amd64",
    "openssh-server",
    "sudo",                  # cloud-init's default user gets sudo rules
    "systemd-sysv",          # minbase has no init
    "udev",                  # loads the virtio drivers (modules in the cloud kernel)
]

# Where the tenant image differs from Debian's cloud-init defaults (the why is
# here, not in the file, so that rewording it does not rebuild the image):
# - only the NoCloud seed is looked for: the lab has no metadata service, and
#   probing datasources that cannot exist only costs boot time under TCG;
# - minbase generates no locales, and cloud-init's default on Debian
#   (en_US.UTF-8) would run locale-gen on first boot; C.UTF-8 is built into
#   libc ("locale: false" skips the module too, but fails the schema check).
TENANT_CLOUD_CFG = """\
# hardway lab tenant image
datasource_list: [NoCloud, None]
locale: C.UTF-8
"""

TENANT_INTERFACES = """\
# Interfaces cloud-init renders from the seed's network-config live here.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
"""

# pass 0, and rw on the kernel command line: no fsck of the root at boot
TENANT_FSTAB = "/dev/vda / ext4 rw,errors=remount-ro 0 0\n"

# minbase makes no /etc/hosts, and the build leaves the build machine's
# resolver in resolv.conf: a guest gets names from its seed, nothing else.
TENANT_HOSTS = """\
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
"""
TENANT_RESOLV_CONF = "# no resolver until the instance's configuration gives one\n"

# Timers that would take the CPU (and the dpkg lock) from a test's first boot.
TENANT_MASKED_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer"]

DISK_SIZE_MIB = 2048
MKE2FS_ARGS = ["-q", "-F", "-t", "ext4", "-L", "rootfs"]
QCOW2_ARGS = ["-c", "-O", "qcow2"]

# Printed by the busybox guest's init on the serial console once eth0 is up.
BUSYBOX_MARKER = "hardway-guest: up"
# panic=-1: should init die, the guest resets instead of hanging silently
BUSYBOX_CMDLINE = "console=ttyS0 panic=-1"

# The modules the busybox guest loads, with what they depend on (the cloud
# kernel builds even the virtio PCI transport as a module; the tenant image's
# initrd loads it through udev, the busybox guest has no udev).
BUSYBOX_MODULES = ["virtio_pci", "virtio_net"]

BUSYBOX_INIT = """\
#!/bin/busybox sh
# Busybox guest: mount the API file systems, load the NIC driver, bring up
# eth0 (and the addresses given as hardway.addr=ADDR/PLEN on the kernel
# command line), print the marker with eth0's addresses, and stay alive.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/lib/modules/$m.ko"; done < /etc/modules
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
ip link set lo up
ip link set eth0 up
read -r cmdline < /proc/cmdline
for word in $cmdline; do
  case "$word" in
    hardway.addr=*) ip addr add "${word#hardway.addr=}" dev eth0 ;;
  esac
done
# let DAD finish so the addresses printed are usable
sleep 2
echo "%s mac=$(cat /sys/class/net/eth0/address)" \\
  "addresses=$(ip -o addr show dev eth0 | awk '{print $4}' | tr '\\n' ',')"
while :; do sleep 3600; done
""" % BUSYBOX_MARKER


def images_dir(cache_dir):
    return os.path.join(cache_dir, "images")


def tenant_hooks():
    """Shell commands run on the finished tenant tree ("$1" is its root)."""
    def write(path, text):
        return "printf '%%s' '%s' > \"$1\"%s" % (text.replace("'", "'\\''"), path)
    masks = " ".join(TENANT_MASKED_UNITS)
    return [
        write("/etc/cloud/cloud.cfg.d/90-hardway-lab.cfg", TENANT_CLOUD_CFG),
        write("/etc/network/interfaces", TENANT_INTERFACES),
        write("/etc/fstab", TENANT_FSTAB),
        'rm -f "$1"/etc/resolv.conf',
        write("/etc/resolv.conf", TENANT_RESOLV_CONF),
        write("/etc/hosts", TENANT_HOSTS),
        'for u in %s; do ln -sf /dev/null "$1"/etc/systemd/system/$u; done' % masks,
        # first boot makes the instance's own identity: cloud-init the host
        # keys, systemd the machine id, the seed the hostname
        'rm -f "$1"/etc/ssh/ssh_host_*',
        'printf "" > "$1"/etc/machine-id',
        'rm -f "$1"/var/lib/dbus/machine-id',
        'printf "localhost\\n" > "$1"/etc/hostname',
    ]


def tenant_key():
    return rootfs.digest({"layout": 1, "suite": rootfs.SUITE, "sources": rootfs.sources(),
                          "packages": sorted(TENANT_PACKAGES), "hooks": tenant_hooks(),
                          "disk_mib": DISK_SIZE_MIB, "mke2fs": MKE2FS_ARGS, "qcow2": QCOW2_ARGS,
                          "cmdline": KERNEL_CMDLINE})


def _manifest(target):
    """The image's description with absolute paths (what callers get)."""
    with open(os.path.join(target, "image.json"), encoding="utf-8") as src:
        info = json.load(src)
    for field in ("kernel", "initrd", "disk", "qcow2"):
        if field in info:
            info[field] = os.path.join(target, info[field])
    info["dir"] = target
    return info


def _write_manifest(tmp, info):
    with open(os.path.join(tmp, "image.json"), "w", encoding="utf-8") as out:
        json.dump(info, out, indent=2, sort_keys=True)


def _take_kernel(tree, dest):
    """Copy the one kernel and its initrd out of the tree; return its version."""
    kernels = glob.glob(os.path.join(tree, "boot", "vmlinuz-*"))
    if len(kernels) != 1:
        raise LabError("tenant tree: expected one kernel in /boot, found %s" % kernels)
    version = os.path.basename(kernels[0])[len("vmlinuz-"):]
    initrd = os.path.join(tree, "boot", "initrd.img-" + version)
    if not os.path.isfile(initrd):
        raise LabError("tenant tree: kernel %s has no initrd" % version)
    # readable by whoever runs qemu (libvirt drops to its own user)
    for src, name in ((kernels[0], "vmlinuz"), (initrd, "initrd.img")):
        shutil.copyfile(src, os.path.join(dest, name))
        os.chmod(os.path.join(dest, name), 0o644)
    return version


def _make_disk(tree, disk):
    """An ext4 file system made from the tree, as a sparse raw disk."""
    with open(disk, "wb") as out:
        out.truncate(DISK_SIZE_MIB * 1024 * 1024)
    run(["mke2fs"] + MKE2FS_ARGS + ["-d", tree, disk], timeout=600)


def tenant(cache_dir, log=print):
    """The tenant image, built first if it is not cached.

    Returns a dict: dir, disk (raw ext4), qcow2 (compressed copy of disk),
    kernel, initrd, kernel_version, cmdline (what boots it), key.
    """
    key = tenant_key()
    name = "tenant-%s" % key

    def build(tmp):
        log("building tenant image %s" % name)
        os.makedirs(tmp)
        tree = os.path.join(tmp, "tree")
        rootfs.mmdebstrap(tree, TENANT_PACKAGES, tenant_hooks())
        version = _take_kernel(tree, tmp)
        _make_disk(tree, os.path.join(tmp, "disk.raw"))
        shutil.rmtree(tree)
        run(["qemu-img", "convert"] + QCOW2_ARGS + [os.path.join(tmp, "disk.raw"),
                                                    os.path.join(tmp, "disk.qcow2")], timeout=900)
        _write_manifest(tmp, {"name": "tenant", "key": key, "kernel": "vmlinuz", "initrd": "initrd.img",
                              "disk": "disk.raw", "qcow2": "disk.qcow2", "kernel_version": version,
                              "cmdline": KERNEL_CMDLINE})
    return _manifest(rootfs.cached(images_dir(cache_dir), name, key, build, log))


def _debugfs(disk, request):
    """Run one debugfs request against the (unmounted) disk image."""
    proc = run(["debugfs", "-R", request, disk], timeout=120)
    return proc.stdout


def _module_closure(disk, version, wanted):
    """Paths (below /lib/modules/VERSION) of the wanted modules and their
    dependencies, dependencies first, as modules.dep in the image lists them."""
    deps = {}
    for line in _debugfs(disk, "cat /lib/modules/%s/modules.dep" % version).splitlines():
        path, _sep, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {os.path.basename(p).split(".ko")[0].replace("-", "_"): p for p in deps}
    order = []

    def visit(path):
        for dep in deps[path]:
            visit(dep)
        if path not in order:
            order.append(path)
    for name in wanted:
        if name not in by_name:
            raise LabError("kernel %s has no module %s" % (version, name))
        visit(by_name[name])
    return order


def _cpio_entry(name, mode, data=b"", rdev=(0, 0)):
    """One entry of a newc cpio archive (the format the kernel unpacks)."""
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    header = b"070701" + b"".join(b"%08x" % f for f in fields) + name.encode() + b"\0"
    pad = b"\0" * (-len(header) % 4)
    return header + pad + data + b"\0" * (-len(data) % 4)


def _cpio(entries):
    """A newc archive of (name, mode, data, rdev) entries; written directly so
    that device nodes need no mknod and the result is byte for byte stable."""
    out = io.BytesIO()
    for ino, entry in enumerate(entries, 1):
        chunk = bytearray(_cpio_entry(*entry))
        chunk[6:14] = b"%08x" % ino
        out.write(chunk)
    out.write(_cpio_entry("TRAILER!!!", 0))
    return out.getvalue()


def _busybox_binary():
    path = "/bin/busybox"
    proc = run(["dpkg-query", "-W", "-f=${Version}", "busybox-static"], check=False)
    if proc.returncode != 0 or not os.path.isfile(path):
        raise LabError("busybox-static is not installed (run 'make setup')")
    return path, proc.stdout.strip()


def busybox_key(tenant_image):
    _path, version = _busybox_binary()
    return rootfs.digest({"layout": 1, "tenant": tenant_image["key"], "busybox": version,
                          "init": BUSYBOX_INIT, "modules": BUSYBOX_MODULES, "cmdline": BUSYBOX_CMDLINE})


def _busybox_initrd(tenant_image, binary, dest):
    """The initramfs: busybox, /init, the NIC driver and a console node."""
    version = tenant_image["kernel_version"]
    modules = _module_closure(tenant_image["disk"], version, BUSYBOX_MODULES)
    dirs = ["bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp"]
    entries = [(d, stat.S_IFDIR | 0o755) for d in dirs]
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)))
    with open(binary, "rb") as src:
        entries.append(("bin/busybox", stat.S_IFREG | 0o755, src.read()))
    entries.append(("init", stat.S_IFREG | 0o755, BUSYBOX_INIT.encode()))
    names = []
    for path in modules:
        data = _debugfs_dump(tenant_image["disk"], "/lib/modules/%s/%s" % (version, path), dest)
        name = os.path.basename(path).split(".ko")[0]
        names.append(name)
        entries.append(("lib/modules/%s.ko" % name, stat.S_IFREG | 0o644, data))
    entries.append(("etc/modules", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode()))
    with open(os.path.join(dest, "initrd.img"), "wb") as out:
        out.write(gzip.compress(_cpio(entries), mtime=0))
    return names


def _debugfs_dump(disk, path, scratch):
    """The contents of one file of the disk image."""
    tmp = os.path.join(scratch, "dump.tmp")
    _debugfs(disk, "dump %s %s" % (path, tmp))
    if not os.path.isfile(tmp):
        raise LabError("%s: no %s in the image" % (disk, path))
    with open(tmp, "rb") as src:
        data = src.read()
    os.unlink(tmp)
    return data


def busybox(cache_dir, log=print):
    """The busybox guest, built first if it is not cached (and the tenant
    image before it, whose kernel and modules it uses).

    Returns a dict: dir, kernel, initrd, kernel_version, cmdline, marker (the
    line prefix its init prints on the serial console when eth0 is up), key.
    """
    base = tenant(cache_dir, log=log)
    binary, _version = _busybox_binary()
    key = busybox_key(base)
    name = "busybox-%s" % key

    def build(tmp):
        log("building busybox guest %s" % name)
        os.makedirs(tmp)
        shutil.copyfile(base["kernel"], os.path.join(tmp, "vmlinuz"))
        os.chmod(os.path.join(tmp, "vmlinuz"), 0o644)
        modules = _busybox_initrd(base, binary, tmp)
        _write_manifest(tmp, {"name": "busybox", "key": key, "kernel": "vmlinuz", "initrd": "initrd.img",
                              "kernel_version": base["kernel_version"], "modules": modules,
                              "cmdline": BUSYBOX_CMDLINE, "marker": BUSYBOX_MARKER})
    return _manifest(rootfs.cached(images_dir(cache_dir), name, key, build, log))


IMAGES = {"tenant": tenant, "busybox": busybox}


def ensure(name, cache_dir, log=print):
    """The image called name (one of IMAGES), built first if needed."""
    if name not in IMAGES:
        raise LabError("unknown image %s (known: %s)" % (name, ", ".join(sorted(IMAGES))))
    image = IMAGES[name](cache_dir, log=log)
    # <cache>/images/NAME points at the current build: a stable path for
    # inventories (the lab's hardway_images) that the build key cannot give
    link = os.path.join(images_dir(cache_dir), name)
    if os.path.realpath(link) != os.path.realpath(image["dir"]):
        tmp = "%s.link-%d" % (link, os.getpid())
        os.symlink(os.path.basename(image["dir"]), tmp)
        os.replace(tmp, link)
    return image
