# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the Ceph modules reach a cluster (plugins/module_utils/ceph.py).
    DOCUMENTATION = r"""
options:
  conf:
    description:
      - The cluster's configuration file on the host, with its monitors (C(mon_host)).
    type: path
    default: /etc/ceph/ceph.conf
  keyring:
    description:
      - The keyring file with the key of I(user), on the host. Only the path is passed on; the module never reads
        or returns the key.
      - Without it librados looks in its default places (C(/etc/ceph/CLUSTER.client.USER.keyring) and others).
    type: path
  user:
    description:
      - The Ceph client the module connects as, without or with the C(client.) prefix (C(admin), C(hypervisor)).
      - It needs the capabilities of what the module does, e.g. C(mon 'profile rbd' osd 'profile rbd pool=vms').
    type: str
    default: admin
    aliases: [client]
  cluster:
    description: The cluster's name (the C($cluster) of Ceph's configuration paths).
    type: str
    default: ceph
  timeout:
    description:
      - Seconds to wait for the monitors when connecting and for each monitor command and OSD operation.
        A cluster that does not answer makes the task fail after this long instead of hanging.
    type: int
    default: 30
requirements:
  - The Python bindings of librados and librbd on the host (Debian packages C(python3-rados), C(python3-rbd)).
notes:
  - Set the connection options once for a play with C(module_defaults) and the action group
    C(group/hardway.cloud.hardway).
"""
