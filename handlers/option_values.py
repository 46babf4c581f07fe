"""The values feed options and daemon keys are written in: strings, booleans, numbers,
durations ("90s", "10m", "2h", "1d"), choices and lists.

Each parser takes the raw TOML value and returns the typed value, or raises ValueError with a
sentence a sysadmin can act on; the config's table reader adds the file and key. They live
here, below both the feed kinds and the config, because both read options with them.
"""

import re
from collections.abc import Callable

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> float:
    """Return the number of seconds in `text`, or raise ValueError saying what is accepted."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f'{text!r} is not a duration; write a number and a unit, like "90s", "10m", "2h" or "1d"')
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    return value


def non_empty_text(value: object) -> str:
    checked = text(value)
    if not checked.strip():
        raise ValueError("must not be empty")
    return checked


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def integer(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number between {low} and {high}")
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range; use {low} to {high}")
        return value

    return parse


def duration(value: object) -> float:
    seconds = parse_duration(text(value))
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def choice(*options: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"{value!r} is not one of: {', '.join(options)}")
        return value

    return parse


def text_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("must be a list of strings")
    return tuple(value)


def choice_list(*options: str, allow_empty: bool = False) -> Callable[[object], tuple[str, ...]]:
    def parse(value: object) -> tuple[str, ...]:
        items = text_list(value)
        if not items and not allow_empty:
            raise ValueError(f"needs at least one of: {', '.join(options)}")
        unknown = [item for item in items if item not in options]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} not one of: {', '.join(options)}")
        return items

    return parse


def percent(value: object) -> float:
    """ "50%" as 0.5."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", text(value))
    if not match or float(match.group(1)) > 100:
        raise ValueError(f'{value!r} is not a percentage from 0% to 100% (like "50%")')
    return float(match.group(1)) / 100


_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}


def byte_size(value: object) -> int:
    """ "5MB" (10^6 bytes), "512KiB" (2^10), "100B"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]|[bB])\s*", text(value))
    if not match:
        raise ValueError(f'{value!r} is not a size; write a number and a unit, like "5MB", "512KiB" or "100B"')
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    if size <= 0:
        raise ValueError("must be larger than zero")
    return size


def time_of_day(value: object) -> tuple[int, int] | None:
    """ "07:00" as (7, 0); "" as None (off)."""
    written = text(value)
    if written.strip() == "":
        return None
    match = re.fullmatch(r"\s*([01]?\d|2[0-3]):([0-5]\d)\s*", written)
    if not match:
        raise ValueError(f'{value!r} is not a time of day; write it like "07:00" (24-hour clock), or "" for off')
    return int(match.group(1)), int(match.group(2))
