# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The attributes every hardway.cloud module shares.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode and return the changed status without changing anything.
    support: full
  diff_mode:
    description: Returns before and after of what the module owns when run with C(--diff).
    support: full
  idempotent:
    description: A second run with the same arguments returns C(changed=false) and writes nothing.
    support: full
  platform:
    description: Runs on Debian hosts.
    support: full
    platforms: debian
"""
