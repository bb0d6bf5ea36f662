# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError
from ansible_collections.hardway.cloud.plugins.module_utils import tenant


def _plain(value):
    """Ansible's lazy containers and unsafe strings as plain Python data."""
    if isinstance(value, dict):
        return dict((str(key), _plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def _call(name, function, *args, **kwargs):
    try:
        return function(*[_plain(arg) for arg in args], **dict((k, _plain(v)) for k, v in kwargs.items()))
    except ParameterError as exc:
        raise AnsibleFilterError("%s: %s" % (name, exc))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("%s: %s" % (name, exc))


def tenant_instances(instances, flavors=None, images=None, networks=None, pool="vms", ssh_authorized_keys=None,
                     image_dir="/var/lib/hardway/images", console_dir="/var/log/libvirt/qemu"):
    return _call("tenant_instances", tenant.instances, instances, flavors, images, networks, pool=pool,
                 ssh_authorized_keys=ssh_authorized_keys, image_dir=image_dir, console_dir=console_dir)


def tenant_images(images, pool="vms", image_dir="/var/lib/hardway/images"):
    return [image for name, image in sorted(_call("tenant_images", tenant.images, images, pool, image_dir).items())]


def tenant_placement(records, hypervisors):
    return _call("tenant_placement", tenant.placement, records, hypervisors)


def frontend_servers(records, frontend):
    return _call("frontend_servers", tenant.frontend_servers, records, frontend)


class FilterModule(object):
    def filters(self):
        return {"tenant_instances": tenant_instances, "tenant_images": tenant_images,
                "tenant_placement": tenant_placement, "frontend_servers": frontend_servers}
