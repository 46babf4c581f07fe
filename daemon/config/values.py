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

from email_validator import EmailNotValidError, validate_email

from handlers.option_values import non_empty_text, text, text_list


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

    def entries(self, key: str) -> list["TableReader"]:
        """Readers for the array of tables `key` (`[[feed.custom]]`); [] when absent."""
        self._read.add(key)
        value = self.table.get(key, [])
        if not isinstance(value, list):
            written = re.sub(r"\[[^\]]*\]", "", self.key_name(key))
            self.error(key, f"must be written as [[{written}]] tables")
            return []
        return [TableReader(self.errors, self.file, self.key_name(f"{key}[{i}]"), item) for i, item in enumerate(value)]

    def finish(self) -> None:
        """Report every key that no one asked for: a typo must not be silently ignored."""
        for key in self.table:
            if key not in self._read:
                close = difflib.get_close_matches(key, sorted(self._read), n=1, cutoff=0.75)
                self.error(key, f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key")


def listen_address(value) -> tuple[str, int]:
    host, sep, port = text(value).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'{value!r} is not an address; write host:port, like "127.0.0.1:2222"')
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
        raise ValueError(f'{value!r} is not a port range; write it like "50000-50100"')
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


def email_address(value) -> str:
    """A bare address ("ops@example.org"), checked by email-validator; a local host name
    ("dropd@localhost", "ops@mailhub") is accepted, as mail servers inside a network use them."""
    address = text(value).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{address!r} is not an email address (write it like ops@example.org)")
    checked = address if "." in domain and domain.lower() != "localhost" else f"{local}@example.org"
    try:
        validate_email(checked, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{address!r} is not an email address: {exc}") from None
    return address


def email_list(value) -> tuple[str, ...]:
    return tuple(email_address(item) for item in text_list(value))


def path_from(base: Path):
    """A parser for a path; relative paths are taken from the directory of the config file."""

    def parse(value) -> Path:
        raw = non_empty_text(value)
        return (base / raw).resolve() if not Path(raw).is_absolute() else Path(raw)

    return parse
