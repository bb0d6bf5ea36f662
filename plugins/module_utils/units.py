# -*- coding: utf-8 -*-
# Copyright: hardway.cloud developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sizes in binary units (volumes, memory): parsed from what people write,
formatted for messages."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re
from fractions import Fraction

from ansible_collections.hardway.cloud.plugins.module_utils.base import ParameterError

UNITS = (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))
SIZE = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*(?:(?P<unit>[KMGTP])(?P<suffix>iB|i|B)?|B)?\Z",
                  re.IGNORECASE)


def parse_size(parameter, value):
    """Bytes from an integer (bytes) or a string with a binary unit: 10G, 512M,
    1.5T, 10GiB (1G = 2**30). The result is a positive whole number of bytes."""
    if isinstance(value, bool):
        raise ParameterError(parameter, "%r is not a size" % (value,))
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ParameterError(parameter, "%r is not a size" % (value,))
        number = Fraction(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ParameterError(parameter, "%r is negative; a size is more than 0" % (value,))
        match = SIZE.match(text)
        if not match:
            raise ParameterError(parameter, "%r is not a size: give bytes or a number with a binary unit, e.g. "
                                            "512M, 10G, 1.5T (K, M, G, T, P; 1G = 1024 M)" % (value,))
        number, unit = Fraction(match.group("number")), match.group("unit")
        if unit and (match.group("suffix") or "").upper() == "B":
            raise ParameterError(parameter, "%r: write %s%s or %s%siB (binary units; %sB could mean powers of 1000)"
                                 % (value, match.group("number"), unit.upper(), match.group("number"),
                                    unit.upper(), unit.upper()))
        if unit:
            number *= dict(UNITS)[unit.upper()]
    else:
        raise ParameterError(parameter, "%r is not a size" % (value,))
    if number < 0:
        raise ParameterError(parameter, "%r is negative; a size is more than 0" % (value,))
    if number.denominator != 1:
        raise ParameterError(parameter, "%r is not a whole number of bytes" % (value,))
    if number == 0:
        raise ParameterError(parameter, "must be more than 0 bytes")
    return int(number)


def format_size(size):
    """Bytes for people: 10 GiB, 1.5 TiB, 1000 bytes."""
    if size is None:
        return "none"
    for unit, factor in UNITS:
        if size >= factor:
            value = Fraction(size, factor)
            if value.denominator == 1:
                return "%d %siB" % (value.numerator, unit)
            if (value * 100).denominator == 1:
                return ("%.2f" % float(value)).rstrip("0") + " %siB" % unit
            break
    return "%d bytes" % size
