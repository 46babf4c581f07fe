"""`[web]` and `[web.staff.NAME]`: the read-only console and the support staff who may log in."""

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from daemon.config import values as v
from daemon.config.secret_files import secret_path
from handlers import option_values as o

STAFF_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class StaffAccount:
    name: str
    password_hash: str
    partners: tuple[str, ...]
    """The partners this person may see; empty: every partner."""

    def sees(self, partner: str) -> bool:
        return not self.partners or partner in self.partners


@dataclass(frozen=True)
class WebSettings:
    listen: tuple[str, int] | None
    """Where the console listens; None: no console."""
    base_url: str
    """How people reach the console ("https://dropd.example.org"); mails link to runs under it."""
    session_lifetime: float
    certfile: Path | None
    keyfile: Path | None
    trusted_proxies: tuple[str, ...]
    """Addresses of reverse proxies whose X-Forwarded-For names the real client."""
    staff: dict[str, StaffAccount] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def secure_cookies(self) -> bool:
        """Cookies only over HTTPS: served with TLS, or behind a proxy people reach by https."""
        return self.tls or self.base_url.startswith("https://")


def _base_url(value) -> str:
    url = o.text(value).strip().rstrip("/")
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f'{url!r} is not a web address; write it like "https://dropd.example.org"')
    return url


def _password_hash(value) -> str:
    hashed = o.non_empty_text(value)
    if not hashed.startswith("$argon2id$"):
        raise ValueError("is not an argon2id hash; make one with `dropd passwd`")
    return hashed


def read_web(table: v.TableReader, base: Path) -> WebSettings:
    listen = table.take("listen", o.text, "")
    address = None
    if listen:
        try:
            address = v.listen_address(listen)
        except ValueError as exc:
            table.error("listen", str(exc))
    certfile = table.take("certfile", v.path_from(base), None)
    keyfile = table.take("keyfile", lambda value: secret_path(o.non_empty_text(value), base), None)
    if (certfile is None) != (keyfile is None):
        table.error(
            "certfile" if certfile is None else "keyfile", "certfile and keyfile go together (HTTPS needs both)"
        )
    for key, path in (("certfile", certfile), ("keyfile", keyfile)):
        if path is not None and not path.is_file():
            table.error(key, f"{path} is not a file")
    settings = WebSettings(
        listen=address,
        base_url=table.take("base_url", _base_url, ""),
        session_lifetime=table.take("session_lifetime", o.duration, 8 * 3600.0),
        certfile=certfile if keyfile is not None else None,
        keyfile=keyfile if certfile is not None else None,
        trusted_proxies=tuple(str(net) for net in table.take("trusted_proxies", v.networks, ())),
        staff=_read_staff(table),
    )
    if settings.session_lifetime is not None and not 60 <= settings.session_lifetime <= 30 * 86400:
        table.error("session_lifetime", "must lie between 1m and 30d")
    if address is not None and not settings.staff:
        table.error("staff", "no one could log in: add a [web.staff.NAME] table with a password_hash")
    table.finish()
    return settings


def _read_staff(table: v.TableReader) -> dict[str, StaffAccount]:
    staff_table = table.sub("staff")
    if staff_table is None:
        return {}
    accounts = {}
    for name in list(staff_table.table):
        member = staff_table.sub(name)
        if member is None:
            continue
        if not STAFF_NAME.fullmatch(name):
            staff_table.error(
                name, "a staff name is lower-case letters, digits, '_', '.' or '-', starting with a letter"
            )
        password_hash = member.take("password_hash", _password_hash)
        partners = member.take("partners", o.text_list, ())
        member.finish()
        if password_hash is not None and partners is not None:
            accounts[name] = StaffAccount(name, password_hash, tuple(partners))
    return accounts


def unknown_staff_partners(file: Path, web: WebSettings, partners) -> list[v.ConfigError]:
    """A staff member limited to a partner no partner file defines (a typo would hide it all)."""
    return [
        v.ConfigError(str(file), f"web.staff.{account.name}.partners", f"{name!r} is not a partner in partners_dir")
        for account in web.staff.values()
        for name in account.partners
        if name not in partners
    ]
