"""Partner files (`partners.d/*.toml`): the partner's account and its feeds."""

import base64
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import schedules
from daemon.config import values as v
from daemon.config.destinations import Destination, read_destination
from daemon.config.secret_files import readable_secret_file
from handlers import KINDS
from handlers import option_values as o

if TYPE_CHECKING:
    import paramiko

PARTNER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Feed:
    """A feed's settings. Every feed has the first block; the import settings are read for
    import kinds only (an export feed has no `prefix` or `archive_path` and they stay None)."""

    name: str
    kind: str
    direction: str
    """"import" or "export", from the kind."""
    enabled: bool
    description: str
    path: str
    schedule: tuple[str, ...]
    notify: tuple[str, ...]
    notify_on: tuple[str, ...]
    options: object = field(default=None, compare=False)
    """Kind-specific settings, read and checked by the feed's kind."""
    # Import feeds
    prefix: str | None = None
    files: str | None = None
    delimiter: str | None = None
    after_import: str | None = None
    archive_path: str | None = None
    count_file: str | None = None
    count_wait: float | None = None
    error_report: bool | None = None
    """Write `<name>.errors.csv` beside an archived or failed file, for the partner."""
    expect_by: str | None = None
    """A schedule expression: by each of its times a file is expected, else an alert."""
    checksum_file: str | None = None
    """Imports: off | optional | required (NAME.sha256 / NAME.md5); exports: off | write."""
    checksum_wait: float | None = None
    ready_marker: str | None = None
    """"NAME.done": a data file waits until the marker named after it is there; "" for none."""
    decrypt_key_file: Path | None = None
    """Imports: the OpenPGP secret key .pgp/.gpg/.asc files are decrypted with."""
    decrypt_passphrase_file: Path | None = None
    verify_key_file: Path | None = None
    """Imports: the OpenPGP public key every encrypted file must be signed by."""
    encrypt_key_file: Path | None = None
    """Exports: the partner's OpenPGP public key; files are sent as <name>.csv.pgp."""
    sign_key_file: Path | None = None
    sign_passphrase_file: Path | None = None
    # Export feeds (prefix and count_file above too)
    keep_days: int | None = None
    """Files in the partner's outbox are removed after this many days."""
    destination: Destination | None = None
    """The partner's own server to push to; None: the partner's folder (`path`)."""


@dataclass(frozen=True)
class Partner:
    name: str
    enabled: bool
    password_hashes: tuple[str, ...]
    """One hash, or two while a password is being rotated; empty for a key-only partner."""
    authorized_keys: "tuple[paramiko.PKey, ...]"
    allow_from: tuple
    feeds: tuple[Feed, ...]
    source: Path
    quota: int | None = None
    """Bytes the partner's home may hold; None: no limit."""
    reply_to: tuple[str, ...] = ()
    """Where a reply to this partner's recaps goes (`Reply-To`); empty: to the sender."""

    def runs(self, feed: Feed) -> bool:
        """A feed runs only while both it and its partner are enabled."""
        return self.enabled and feed.enabled

    def allows(self, address: str) -> bool:
        if not self.allow_from:
            return True
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self.allow_from)


def password_hashes(value) -> tuple[str, ...]:
    """One argon2 hash, or a list of two during a rotation (old and new both log in)."""
    hashes = [value] if isinstance(value, str) else value
    if not isinstance(hashes, list) or not 1 <= len(hashes) <= 2:
        raise ValueError("must be an argon2 hash from `dropd passwd`, or a list of two during a rotation")
    for one in hashes:
        if not o.text(one).startswith("$argon2"):
            raise ValueError("must be an argon2 hash from `dropd passwd` (starts with $argon2)")
    return tuple(hashes)


def authorized_keys(value) -> "tuple[paramiko.PKey, ...]":
    import paramiko  # only where a partner has keys: it adds 26 MiB and 65 ms to every command

    keys = []
    for number, line in enumerate(o.text_list(value), start=1):
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f'entry {number} is not "TYPE BASE64 [comment]"')
        try:
            keys.append(paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1])))
        except Exception as exc:
            raise ValueError(f"entry {number} is not a usable public key ({exc})") from None
    return tuple(keys)


def virtual_dir(value) -> str:
    path = o.text(value)
    if not path.startswith("/"):
        raise ValueError(f"{path!r} must be a full path inside the partner home, starting with /")
    if "\x00" in path or any(part == ".." for part in path.split("/")):
        raise ValueError(f"{path!r} must not contain '..' or NUL")
    return "/" + "/".join(part for part in path.split("/") if part)


def read_feed(errors, file: Path, index: int, table) -> Feed | None:
    reader = v.TableReader(errors, file, f"feed[{index}]", table)
    if not isinstance(table, dict):
        return None
    before = len(errors)
    name = reader.take("name", o.non_empty_text)
    if name is not None:
        reader.prefix = f"feed[{name}]"
    kind = reader.take("kind", o.choice(*KINDS))
    direction = KINDS[kind].direction if kind else "import"
    feed = dict(
        name=name,
        kind=kind,
        direction=direction,
        enabled=reader.take("enabled", o.boolean, True),
        description=reader.take("description", o.text, ""),
        path=reader.take("path", virtual_dir, "/outbox" if direction == "export" else v.REQUIRED),
        schedule=reader.take("schedule", schedule_entries(direction), ()),
        notify=reader.take("notify", v.email_list, ()),
        notify_on=reader.take(
            "notify_on",
            o.choice_list("failed", "success", "skipped", allow_empty=True),
            ("failed", "success") if direction == "import" else ("failed",),
        ),
        options=KINDS[kind].read_options(reader) if kind else None,
    )
    if direction == "import":
        feed.update(_read_import_settings(reader, feed["path"], file.parent))
    else:
        feed.update(_read_export_settings(reader, file.parent))
    reader.finish()
    if len(errors) > before:
        return None
    return Feed(**feed)


def schedule_entries(direction: str):
    """A parser for `schedule`: every entry read by `daemon/schedules.py`, written once each."""

    def parse(value) -> tuple[str, ...]:
        entries = []
        for item in o.text_list(value):
            try:
                schedules.parse(item, direction)
            except schedules.ScheduleError as exc:
                raise ValueError(f"{item!r}: {exc}") from None
            written = " ".join(item.split())
            if written not in entries:
                entries.append(written)
        return tuple(entries)

    return parse


def schedule_expression(value) -> str:
    """`expect_by`: one schedule expression (not on_arrival), as `schedule` entries are written."""
    written = " ".join(o.non_empty_text(value).split())
    try:
        if schedules.parse(written, "import") is None:
            raise ValueError('is a time, not on_arrival; write it like "at 07:00" or "at 07:00 on mon-fri"')
    except schedules.ScheduleError as exc:
        raise ValueError(f"{written!r}: {exc}") from None
    return written


def _ready_marker(value) -> str:
    marker = o.text(value).strip()
    if marker and (marker.count("NAME") != 1 or marker == "NAME" or "/" in marker):
        raise ValueError(f'{marker!r} must name the marker after its data file, once, like "NAME.done" or "NAME.ready"')
    if marker.endswith((".sha256", ".md5")):
        raise ValueError(f"{marker!r} ends like a checksum file; pick another ending, like .done")
    return marker


def _read_export_settings(reader, config_dir: Path) -> dict:
    return dict(
        prefix=reader.take("prefix", o.non_empty_text),
        count_file=reader.take("count_file", o.choice("off", "write"), "off"),
        checksum_file=reader.take("checksum_file", o.choice("off", "write"), "off"),
        encrypt_key_file=reader.take("encrypt_key_file", readable_secret_file(config_dir), None),
        sign_key_file=reader.take("sign_key_file", readable_secret_file(config_dir), None),
        sign_passphrase_file=reader.take("sign_passphrase_file", readable_secret_file(config_dir), None),
        keep_days=reader.take("keep_days", o.integer(1, 3650), 30),
        destination=read_destination(reader, config_dir),
    )


def _read_import_settings(reader, path: str | None, config_dir: Path) -> dict:
    settings = dict(
        prefix=reader.take("prefix", o.non_empty_text),
        files=reader.take("files", o.choice("most_recent", "all"), "most_recent"),
        delimiter=reader.take("delimiter", o.choice("comma", "tab"), "comma"),
        after_import=reader.take("after_import", o.choice("move", "delete"), "move"),
        # Also where superseded files go when after_import = "delete".
        archive_path=reader.take("archive_path", virtual_dir, (path or "").rstrip("/") + "/archive"),
        count_file=reader.take("count_file", o.choice("off", "optional", "required"), "optional"),
        count_wait=reader.take("count_wait", o.duration, 600.0),
        error_report=reader.take("error_report", o.boolean, True),
        expect_by=reader.take("expect_by", schedule_expression, None),
        checksum_file=reader.take("checksum_file", o.choice("off", "optional", "required"), "off"),
        checksum_wait=reader.take("checksum_wait", o.duration, 600.0),
        ready_marker=reader.take("ready_marker", _ready_marker, ""),
        decrypt_key_file=reader.take("decrypt_key_file", readable_secret_file(config_dir), None),
        decrypt_passphrase_file=reader.take("decrypt_passphrase_file", readable_secret_file(config_dir), None),
        verify_key_file=reader.take("verify_key_file", readable_secret_file(config_dir), None),
    )
    if settings["verify_key_file"] and not settings["decrypt_key_file"]:
        reader.error("verify_key_file", "signatures are checked on decrypted files: set decrypt_key_file too")
    if settings["archive_path"] and settings["archive_path"].rstrip("/") == (path or "").rstrip("/"):
        reader.error("archive_path", "must differ from path: archived files would be imported again")
    return settings


def read_partner(errors: list, file: Path) -> Partner | None:
    try:
        with open(file, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        errors.append(v.ConfigError(str(file), "", f"cannot read: {exc.strerror}"))
        return None
    except tomllib.TOMLDecodeError as exc:
        errors.append(v.ConfigError(str(file), "", f"is not valid TOML: {exc}"))
        return None
    before = len(errors)
    top = v.TableReader(errors, file, "", document)
    section = top.sub("partner", required=True)
    feeds_raw = top.take("feed", _array_of_tables, [])
    top.finish()
    if section is None:
        return None
    name = section.take("name", _partner_name)
    partner = dict(
        name=name,
        enabled=section.take("enabled", o.boolean, True),
        password_hashes=section.take("password_hash", password_hashes, ()),
        authorized_keys=section.take("authorized_keys", authorized_keys, ()),
        allow_from=section.take("allow_from", v.networks, ()),
        quota=section.take("quota", o.byte_size, None),
        reply_to=section.take("reply_to", v.email_list, ()),
    )
    section.finish()
    if not partner["password_hashes"] and not partner["authorized_keys"] and len(errors) == before:
        section.error("password_hash", "a partner needs a password_hash, authorized_keys, or both")
    feeds = [read_feed(errors, file, index, table) for index, table in enumerate(feeds_raw or [])]
    seen = set()
    for feed in feeds:
        if feed and feed.name in seen:
            errors.append(v.ConfigError(str(file), f"feed[{feed.name}].name", "is used twice"))
        if feed:
            seen.add(feed.name)
    if len(errors) > before:
        return None
    return Partner(feeds=tuple(feeds), source=file, **partner)


def _partner_name(value) -> str:
    if not PARTNER_NAME.fullmatch(o.text(value)):
        raise ValueError(f"{value!r} is not a usable partner name: use 1-64 lower-case letters, digits, '-' or '_'")
    return value


def _array_of_tables(value) -> list:
    if not isinstance(value, list):
        raise ValueError("must be written as [[feed]] tables")
    return value
