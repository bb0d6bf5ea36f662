# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.cloud.plugins.module_utils.addressing import eui64_address, prefix_address


def _prefix_address(prefix, index=1, with_prefixlen=False):
    try:
        return prefix_address(prefix, int(index), with_prefixlen)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("prefix_address: %s" % exc)


def _eui64_address(mac, prefix):
    try:
        return eui64_address(prefix, mac)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("eui64_address: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"prefix_address": _prefix_address, "eui64_address": _eui64_address}
