"""Parsing of the duration strings used in configuration ("90s", "10m", "2h", "1d")."""

import re

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> float:
    """Return the number of seconds in `text`, or raise ValueError saying what is accepted."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit, like \"90s\", \"10m\", \"2h\" or \"1d\""
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
