# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape every hardway.cloud module shares: read the actual state, plan,
stop there in check mode, apply, report. Errors become ``fail_json`` with a
message that names the parameter; nothing escapes as a traceback."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import AnsibleModule


class ParameterError(Exception):
    """Bad input: the message names the parameter."""

    def __init__(self, parameter, message):
        super(ParameterError, self).__init__("%s: %s" % (parameter, message))
        self.parameter = parameter


class ModuleError(Exception):
    """A failure of the managed thing (a daemon, the kernel, a validator)."""

    def __init__(self, message, **details):
        super(ModuleError, self).__init__(message)
        self.details = details


class HardwayModule(object):
    """Subclasses set ``argument_spec`` (and ``module_kwargs``) and implement
    ``run()``, which reads, plans, and applies unless ``self.check_mode``.
    ``self.result`` is returned; ``set_diff`` records before/after."""

    argument_spec = {}
    module_kwargs = {}

    def __init__(self):
        self.module = AnsibleModule(argument_spec=self.argument_spec, supports_check_mode=True,
                                    **self.module_kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.result = {"changed": False}

    def set_diff(self, before, after):
        if self.module._diff:
            self.result["diff"] = {"before": before, "after": after}

    def run(self):
        raise NotImplementedError

    @classmethod
    def main(cls):
        instance = cls()
        module = instance.module
        try:
            instance.run()
        except ParameterError as exc:
            instance.result.pop("diff", None)
            module.fail_json(msg=str(exc), parameter=exc.parameter, **instance.result)
        except ModuleError as exc:
            result = dict(instance.result)
            result.update(exc.details)
            module.fail_json(msg=str(exc), **result)
        except Exception as exc:  # pylint: disable=broad-except
            # an unforeseen failure still ends as a clear message, with the
            # traceback kept for -vvv instead of printed raw
            module.fail_json(msg="%s: %s" % (type(exc).__name__, exc), exception=traceback.format_exc(),
                             **instance.result)
        module.exit_json(**instance.result)
