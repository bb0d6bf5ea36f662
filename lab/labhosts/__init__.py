"""Lab hosts for hardway.cloud: Debian hosts booting their own systemd.

Each host is a systemd-nspawn container over an overlay of one cached Debian
rootfs, in its own network namespace, joined to an IPv6 underlay bridge (the
fabric) that lives in a namespace of its own. The controller reaches the hosts
over SSH through one veth into the fabric; apt in the hosts reaches the Debian
mirror through a relay on that veth's address.
"""
