"""Value parsers for configuration keys, and the table reader that collects their errors.

A parser takes the raw TOML value and returns the typed value or raises ValueError with a
sentence a sysadmin can act on. `TableReader` records each error with its file and key, so
one pass over a config reports every problem at once.
"""

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from daemon.durations import parse_duration


@dataclass(frozen=True)
class ConfigError:
    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"


class ConfigInvalid(Exception):
    """The configuration has errors; `errors` lists every one of them."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(error) for error in errors))


REQUIRED = object()


class TableReader:
    """Reads keys from one TOML table, recording errors instead of stopping at the first."""

    def __init__(self, errors: list[ConfigError], file: Path, prefix: str, table):
        self.errors = errors
        self.file = file
        self.prefix = prefix
        self.table = table if isinstance(table, dict) else {}
        self._read: set[str] = set()
        if not isinstance(table, dict):
            self.error("", "must be a table")

    def key_name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if key and self.prefix else (key or self.prefix)

    def error(self, key: str, message: str) -> None:
        self.errors.append(ConfigError(str(self.file), self.key_name(key), message))

    def has(self, key: str) -> bool:
        return key in self.table

    def take(self, key: str, parse, default=REQUIRED):
        """Return the parsed value of `key`, its default when absent, or None after an error."""
        self._read.add(key)
        if key not in self.table:
            if default is REQUIRED:
                self.error(key, "is required")
                return None
            return default
        try:
            return parse(self.table[key])
        except ValueError as exc:
            self.error(key, str(exc))
            return None

    def sub(self, key: str, required: bool = False) -> "TableReader | None":
        """A reader for the sub-table `key`, or None when it is absent (an error if required)."""
        self._read.add(key)
        if key not in self.table:
            if required:
                self.error(key, "is required")
            return None
        return TableReader(self.errors, self.file, self.key_name(key), self.table[key])

    def finish(self) -> None:
        """Report every key that no one asked for: a typo must not be silently ignored."""
        for key in self.table:
            if key not in self._read:
                close = difflib.get_close_matches(key, sorted(self._read), n=1, cutoff=0.75)
                self.error(key, f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key")


def text(value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {type(value).__name__}")
    return value


def non_empty_text(value) -> str:
    if not text(value).strip():
        raise ValueError("must not be empty")
    return value


def boolean(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def integer(low: int, high: int):
    def parse(value) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number between {low} and {high}")
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range; use {low} to {high}")
        return value

    return parse


def duration(value) -> float:
    seconds = parse_duration(text(value))
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def choice(*options: str):
    def parse(value) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of: {', '.join(options)}")
        return value

    return parse


def text_list(value) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("must be a list of strings")
    return tuple(value)


def choice_list(*options: str, allow_empty: bool = False):
    def parse(value) -> tuple[str, ...]:
        items = text_list(value)
        if not items and not allow_empty:
            raise ValueError(f"needs at least one of: {', '.join(options)}")
        unknown = [item for item in items if item not in options]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} not one of: {', '.join(options)}")
        return items

    return parse


def listen_address(value) -> tuple[str, int]:
    host, sep, port = text(value).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not an address; write host:port, like \"127.0.0.1:2222\"")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"{host!r} is not an IP address (or localhost)") from None
        host = "127.0.0.1"
    return host, int(port)


def port_range(value) -> range:
    match = re.fullmatch(r"(\d+)-(\d+)", text(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a port range; write it like \"50000-50100\"")
    low, high = int(match.group(1)), int(match.group(2))
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"{value!r} must lie within 1024-65535, low end first")
    return range(low, high + 1)


def networks(value) -> tuple:
    result = []
    for item in text_list(value):
        try:
            result.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a network in CIDR form ({exc})") from None
    return tuple(result)


def email_list(value) -> tuple[str, ...]:
    items = text_list(value)
    bad = [item for item in items if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", item)]
    if bad:
        raise ValueError(f"not an email address: {', '.join(map(repr, bad))}")
    return items


def path_from(base: Path):
    """A parser for a path; relative paths are taken from the directory of the config file."""

    def parse(value) -> Path:
        raw = non_empty_text(value)
        return (base / raw).resolve() if not Path(raw).is_absolute() else Path(raw)

    return parse
