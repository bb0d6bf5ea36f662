"""Draw docs/architecture.png, the picture of a hardway.cloud deployment.

    python docs/architecture.py

needs matplotlib (requirements-dev.txt) and writes architecture.png next to
this file. Coordinates are in units of 100 pixels: the picture is 1600x1000.
"""

import os

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

WIDTH, HEIGHT = 16, 10
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "architecture.png")

# one colour per tier, light fills with darker edges
TIER = {
    "controller": ("#eef2f7", "#4a5a70"),
    "clients": ("#f4f4f4", "#666666"),
    "storage": ("#fdf1e3", "#b06a12"),
    "hypervisors": ("#e8f3ea", "#2f7a3d"),
    "edge": ("#ece8f6", "#5b46a0"),
    "underlay": ("#e6f0fa", "#2d6aa8"),
}
INNER = "#ffffff"
TEXT = "#1f1f1f"


def box(ax, x, y, w, h, tier, title=None, lines=(), inner=False, size=10, title_size=12, align="center"):
    """A rounded box; the title on top, the lines below it."""
    fill, edge = TIER[tier]
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.12",
                                facecolor=INNER if inner else fill, edgecolor=edge,
                                linewidth=1.2 if inner else 2.0, zorder=2 if inner else 1))
    top = y + h - 0.12
    tx = x + w / 2 if align == "center" else x + 0.15
    if title:
        ax.text(tx, top, title, ha=align, va="top", fontsize=title_size, fontweight="bold",
                color=edge if not inner else TEXT, zorder=3)
        top -= 0.30 if title_size >= 12 else 0.26
    for line in lines:
        ax.text(tx, top, line, ha=align, va="top", fontsize=size, color=TEXT, zorder=3,
                family="monospace" if line.startswith("$") else None)
        top -= 0.23 if size <= 9.5 else 0.25


def arrow(ax, points, color, dashed=False, width=1.6):
    """A polyline through points with an arrow head at its end."""
    line = "--" if dashed else "-"
    for (x0, y0), (x1, y1) in zip(points[:-2], points[1:-1]):
        ax.plot([x0, x1], [y0, y1], color=color, linewidth=width, linestyle=line, zorder=4)
    ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=16, color=color,
                                 linewidth=width, linestyle=line, zorder=4, shrinkA=0, shrinkB=0))


def label(ax, x, y, text, color=TEXT, size=9.5, ha="center", va="center", weight=None):
    ax.text(x, y, text, ha=ha, va=va, fontsize=size, color=color, zorder=5, fontweight=weight,
            bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none", alpha=0.9))


def draw():
    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.axis("off")

    # --- the controller and the outside world ---------------------------------
    box(ax, 0.3, 7.75, 5.6, 2.0, "controller", "controller", [
        "ansible-core 2.19, collection hardway.cloud",
        "ansible-playbook -i inventories/example",
        "    playbooks/site.yml | tenants.yml | teardown.yml",
        "cluster inventory (hardway.cloud.cluster,",
        "    python3-libvirt): the VMs as they run",
    ], align="left", size=10)
    box(ax, 11.6, 8.45, 4.1, 1.3, "clients", "outside clients", [
        "HTTP / TCP over IPv4 and IPv6",
        "e.g. http://www.example.org/",
    ], size=10)

    # --- storage hosts --------------------------------------------------------
    sx, sw = 0.3, 3.5
    box(ax, sx, 1.8, sw, 4.95, "storage", "storage hosts", ["stor1, stor2, stor3"], size=10)
    box(ax, sx + 0.2, 5.05, sw - 0.4, 0.95, "storage", "ceph-mon + ceph-mgr", [
        "on each of the 3 monitor hosts",
        "ceph-mon@HOST, ceph-mgr@HOST"], inner=True, size=9.5, title_size=10.5)
    box(ax, sx + 0.2, 3.85, sw - 0.4, 0.95, "storage", "ceph-osd (BlueStore)", [
        "one per whole device",
        "ceph-osd@ID"], inner=True, size=9.5, title_size=10.5)
    box(ax, sx + 0.2, 2.0, sw - 0.4, 1.6, "storage", "pool vms (3 copies)", [
        "image-debian12@base",
        "web1-root  (clone, flavor's disk)",
        "web1-seed  (cloud-init cidata)",
        "...",
    ], inner=True, size=9.5, title_size=10.5)

    # --- hypervisors ----------------------------------------------------------
    hx, hw = 5.0, 5.0
    box(ax, hx, 1.8, hw, 4.95, "hypervisors", "hypervisors", ["hv1, hv2, hv3, ... (KVM)"], size=10)
    box(ax, hx + 0.2, 5.15, hw - 0.4, 0.85, "hypervisors", "libvirtd + QEMU/KVM", [
        "Ceph key as a libvirt secret",
        "port security: each VM port sends from its own MAC only"], inner=True, size=9.5, title_size=10.5)
    box(ax, hx + 0.2, 3.25, 2.2, 1.65, "hypervisors", "VM web1", [
        "root: vms/web1-root",
        "seed: vms/web1-seed",
        "eth0 02:ee:1d:7e:e6:1d",
        "SLAAC address",
    ], inner=True, size=9, title_size=10.5)
    box(ax, hx + 2.6, 3.25, 2.2, 1.65, "hypervisors", "VM db1", [
        "root: vms/db1-root",
        "seed: vms/db1-seed",
        "eth0 on net200",
        "eth1 on net100",
    ], inner=True, size=9, title_size=10.5)
    box(ax, hx + 0.2, 2.0, hw - 0.4, 0.95, "hypervisors", "bridges br-vni100, br-vni200", [
        "+ vxlan100, vxlan200: pure L2, no address"], inner=True, size=9.5, title_size=10.5)
    # VMs plugged into the bridges
    for vx in (hx + 1.3, hx + 3.7):
        ax.plot([vx, vx], [3.25, 2.95], color=TIER["hypervisors"][1], linewidth=1.6, zorder=4)

    # --- edge hosts -----------------------------------------------------------
    ex, ew = 11.6, 4.1
    box(ax, ex, 1.8, ew, 4.95, "edge", "edge hosts", ["edge1, edge2"], size=10)
    box(ax, ex + 0.2, 4.7, ew - 0.4, 1.3, "edge", "HAProxy", [
        "frontend web  0.0.0.0:80  [::]:80",
        "servers web1, web2: IPv6",
        "frontend postgres  [::]:5432  (tcp)",
        "servers db1: IPv6",
    ], inner=True, size=9.5, title_size=10.5)
    box(ax, ex + 0.2, 3.35, ew - 0.4, 1.1, "edge", "radvd", [
        "prefix, RDNSS, DNSSL, MTU",
        "of the networks this host routes",
    ], inner=True, size=9.5, title_size=10.5)
    box(ax, ex + 0.2, 2.0, ew - 0.4, 1.1, "edge", "bridges br-vni100, br-vni200", [
        "gateway 2001:db8:100::1/64 (edge1)",
        "IPv6 forwarding on",
    ], inner=True, size=9.5, title_size=10.5)
    ax.plot([ex + 2.05, ex + 2.05], [3.35, 3.1], color=TIER["edge"][1], linewidth=1.6, zorder=4)

    # --- the underlay ---------------------------------------------------------
    box(ax, 0.3, 0.25, 15.4, 1.05, "underlay", None)
    ax.text(8.0, 0.93, "IPv6 underlay  2001:db8:0:1::/64", ha="center", va="center", fontsize=12,
            fontweight="bold", color=TIER["underlay"][1], zorder=3)
    ax.text(8.0, 0.55, "SSH, Ceph (monitors, OSDs, RBD), VXLAN in UDP 4789: one IPv6 multicast group per "
            "network (ff05::e000:0:0 + VNI), or unicast peers",
            ha="center", va="center", fontsize=10, color=TEXT, zorder=3)
    # every host is on it; hypervisors and edge hosts carry the tenant networks over it
    under = TIER["underlay"][1]
    for x in (sx + sw / 2, hx + hw / 2, ex + ew / 2):
        ax.plot([x, x], [1.3, 1.8], color=under, linewidth=3, zorder=1)
    label(ax, hx + hw / 2 + 0.1, 1.55, "VXLAN", color=under, size=9, ha="left")
    label(ax, ex + ew / 2 + 0.1, 1.55, "VXLAN", color=under, size=9, ha="left")
    label(ax, sx + sw / 2 + 0.1, 1.55, "Ceph", color=under, size=9, ha="left")

    # --- connections ----------------------------------------------------------
    ctl = TIER["controller"][1]
    # SSH from the controller to every host: a bus with a drop per tier
    bus_y = 7.4
    ax.plot([1.6, 1.6], [7.75, bus_y], color=ctl, linewidth=1.8, zorder=4)
    ax.plot([1.6, 12.4], [bus_y, bus_y], color=ctl, linewidth=1.8, zorder=4)
    for x in (1.6, 6.0, 12.4):
        arrow(ax, [(x, bus_y), (x, 6.75)], ctl, width=1.8)
    ax.text(3.8, 7.22, "SSH as root", ha="center", va="center", fontsize=10, fontweight="bold", color=ctl)
    ax.text(3.8, 6.95, "roles storage, hypervisor, network, edge, tenant", ha="center", va="center",
            fontsize=9, color=ctl)

    # the cluster inventory reads libvirt on the hypervisors
    arrow(ax, [(5.9, 8.35), (9.2, 8.35), (9.2, 6.75)], ctl, dashed=True, width=1.5)
    label(ax, 7.55, 8.6, "libvirt, read-only (qemu+ssh)", color=ctl, size=9.5)
    label(ax, 7.55, 8.1, "cluster inventory", color=ctl, size=9.5)

    # clients to HAProxy
    cli = TIER["clients"][1]
    arrow(ax, [(14.6, 8.45), (14.6, 6.0)], cli, width=2.0)
    label(ax, 14.7, 7.7, "IPv4 + IPv6", color=cli, size=9.5, ha="left")

    # RBD between the VMs and the OSDs
    sto = TIER["storage"][1]
    ax.add_patch(FancyArrowPatch((sx + sw - 0.2, 4.1), (hx + 0.2, 4.1), arrowstyle="<|-|>", mutation_scale=16,
                                 color=sto, linewidth=2.0, zorder=4))
    label(ax, (sx + sw + hx) / 2, 4.55, "RBD", color=sto, size=10, weight="bold")
    label(ax, (sx + sw + hx) / 2, 3.6, "cephx\nclient.\nhypervisor", color=sto, size=9)

    # HAProxy to the VMs over IPv6, on the tenant network
    edg = TIER["edge"][1]
    ax.add_patch(FancyArrowPatch((ex + 0.2, 5.2), (hx + 4.8, 4.45), arrowstyle="-|>", mutation_scale=16,
                                 color=edg, linewidth=2.0, linestyle="--", zorder=4,
                                 connectionstyle="arc3,rad=0.0"))
    label(ax, (hx + hw + ex) / 2, 5.6, "HTTP/TCP over\nIPv6 to the VMs'\nSLAAC addresses", color=edg, size=9)
    # router advertisements from radvd reach the VMs on the tenant network
    ax.add_patch(FancyArrowPatch((ex + 0.2, 3.9), (hx + 4.8, 3.9), arrowstyle="-|>", mutation_scale=16,
                                 color=edg, linewidth=1.6, linestyle=":", zorder=4))
    label(ax, (hx + hw + ex) / 2, 3.45, "router\nadvertise-\nments", color=edg, size=9)
    ax.add_patch(FancyArrowPatch((hx + 4.8, 2.6), (ex + 0.2, 2.6), arrowstyle="<|-|>", mutation_scale=14,
                                 color=under, linewidth=1.6, linestyle="--", zorder=4))
    label(ax, (hx + hw + ex) / 2, 2.85, "one L2 per VNI", color=under, size=9)
    label(ax, (hx + hw + ex) / 2, 2.25, "VXLAN via\nthe underlay", color=under, size=9)

    ax.text(8.75, 9.55, "hardway.cloud", ha="center", va="center", fontsize=16, fontweight="bold", color=TEXT)
    ax.text(8.75, 9.2, "the layout of inventories/example", ha="center", va="center", fontsize=10.5, color=TEXT)

    fig.savefig(OUT, dpi=100)
    return OUT


if __name__ == "__main__":
    print(draw())
