"""The whole configuration: `dropd.toml` plus every partner file, validated in one pass.

`load_config` either returns a complete `Config` or raises `ConfigInvalid` listing every
error with its file and key. Nothing is defaulted silently when a value is wrong.
"""

import socket
import tomllib
import urllib.parse
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from daemon.config import values as v
from daemon.config.destinations import KeyUnusable, load_private_key
from daemon.config.partners import Partner, read_partner
from daemon.config.secret_files import readable_secret_file, secret_path
from daemon.config.values import ConfigInvalid
from daemon.config.web import WebSettings, read_web, unknown_staff_partners
from handlers import option_values as o


@dataclass(frozen=True)
class DaemonSettings:
    state_dir: Path
    drop_root: Path
    partners_dir: Path
    timezone: str
    store: str
    store_password_file: Path | None
    """PostgreSQL: a file (or systemd credential) holding the password; never in the URL."""
    grace_time: float
    quiet_period: float
    rescan: float
    control_socket: Path
    instance: str
    """This daemon's name among several sharing a PostgreSQL store (recorded with each run)."""
    lease: float
    """How long a run stays this instance's without a heartbeat before another takes it over."""
    keep_days: int
    """Run artefacts (error files and rows, mail bodies) older than this are pruned."""


@dataclass(frozen=True)
class SftpSettings:
    listen: tuple[str, int]
    host_keys: tuple[Path, ...]


@dataclass(frozen=True)
class FtpSettings:
    listen: tuple[str, int]
    tls: str
    certfile: Path | None
    keyfile: Path | None
    self_signed: bool
    passive_ports: range
    masquerade_address: str


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    username: str
    password_file: Path | None
    sender: str
    admin: tuple[str, ...]
    timeout: float
    ca_file: Path | None
    """A CA bundle to verify the server with; the system's store when None."""
    max_attachment: int
    digest_at: tuple[int, int] | None
    retry: float
    """The first wait before sending a message again; it doubles up to an hour."""


@dataclass(frozen=True)
class AlertSettings:
    failed_runs: int
    """A feed failing this many times in a row is an alert."""
    min_free: float
    expiry_warning: float
    interval: float


@dataclass(frozen=True)
class SecuritySettings:
    max_failures: int
    window: float
    ban: float
    login_grace_time: float
    max_unauthenticated: int
    max_unauthenticated_per_address: int
    max_sessions_per_address: int
    max_auth_attempts: int
    max_handles_per_session: int
    """SFTP files and folders open at once in one session; more are refused with a failure status."""
    max_channels_per_connection: int
    """SSH channels open at once on one connection (each SFTP session is one, with a thread)."""


@dataclass(frozen=True)
class MetricsSettings:
    listen: tuple[str, int] | None
    """Where Prometheus scrapes /metrics; None: no metrics server."""


@dataclass(frozen=True)
class Config:
    file: Path
    daemon: DaemonSettings
    sftp: SftpSettings | None
    ftp: FtpSettings | None
    smtp: SmtpSettings | None
    security: SecuritySettings
    alerts: AlertSettings
    metrics: MetricsSettings
    web: WebSettings
    partners: dict[str, Partner]
    skipped: tuple = ()
    """With `skip_broken_partners`: the errors of partner files that were left out."""

    def feeds(self):
        """Every (partner, feed) pair, in partner-name order."""
        for name in sorted(self.partners):
            for feed in self.partners[name].feeds:
                yield self.partners[name], feed

    def feed(self, name: str):
        for partner, feed in self.feeds():
            if feed.name == name:
                return partner, feed
        raise KeyError(name)


def _timezone(value) -> str:
    try:
        zoneinfo.ZoneInfo(o.non_empty_text(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'{value!r} is not a known time zone (e.g. "America/New_York")') from None
    return value


def _instance_name(value) -> str:
    name = o.non_empty_text(value).strip()
    if len(name) > 64 or any(character.isspace() for character in name):
        raise ValueError(f"{name!r}: use at most 64 characters and no spaces")
    return name


def _store(value) -> str:
    store = o.text(value)
    if store != "sqlite" and not store.startswith(("postgresql://", "postgres://")):
        raise ValueError('must be "sqlite" or a postgresql:// URL')
    parts = urllib.parse.urlsplit(store)
    in_query = any(
        name.lower() == "password" for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    if parts.password or in_query:
        # The value is never repeated in the message: the error is printed and logged.
        raise ValueError("the URL holds a password: put it in a file named by store_password_file instead")
    return store


def _read_daemon(table: v.TableReader, base: Path) -> dict:
    """The [daemon] values; a value that failed to parse is None (its error is recorded)."""
    path = v.path_from(base)
    state_dir = table.take("state_dir", path)
    settings = dict(
        state_dir=state_dir,
        drop_root=table.take("drop_root", path),
        partners_dir=table.take("partners_dir", path, base / "partners.d"),
        timezone=table.take("timezone", _timezone, "UTC"),
        store=table.take("store", _store, "sqlite"),
        store_password_file=table.take("store_password_file", readable_secret_file(base), None),
        grace_time=table.take("grace_time", o.duration, 30.0),
        quiet_period=table.take("quiet_period", o.duration, 30.0),
        rescan=table.take("rescan", o.duration, 60.0),
        control_socket=table.take("control_socket", path, state_dir / "control.sock" if state_dir else None),
        instance=table.take("instance", _instance_name, socket.gethostname()),
        lease=table.take("lease", o.duration, 30.0),
        keep_days=table.take("keep_days", o.integer(1, 36500), 90),
    )
    table.finish()
    return settings


def _read_sftp(table: v.TableReader, base: Path) -> SftpSettings | None:
    host_keys = table.take("host_keys", o.text_list, ())
    settings = SftpSettings(
        listen=table.take("listen", v.listen_address, ("0.0.0.0", 22)),
        host_keys=tuple(v.path_from(base)(key) for key in host_keys or ()),
    )
    if host_keys is not None and not host_keys:
        table.error("host_keys", "needs at least one key file (it is generated if missing)")
    table.finish()
    return settings


def _read_ftp(table: v.TableReader, base: Path) -> FtpSettings | None:
    path = v.path_from(base)
    tls = table.take("tls", o.choice("required", "off"), "required")
    certfile = table.take("certfile", path, None)
    # The key is a secret: a bare name is a systemd credential ($CREDENTIALS_DIRECTORY) first.
    keyfile = table.take("keyfile", lambda value: secret_path(o.non_empty_text(value), base), None)
    self_signed = table.take("self_signed", o.boolean, False)
    if tls == "required":
        for key, value in (("certfile", certfile), ("keyfile", keyfile)):
            if value is None and not table.has(key):
                table.error(key, 'is required when tls = "required"')
            elif value is not None and not self_signed and not _present(table, key, value):
                table.error(key, f"{value} does not exist (set self_signed = true to generate one)")
    settings = FtpSettings(
        listen=table.take("listen", v.listen_address, ("0.0.0.0", 21)),
        tls=tls,
        certfile=certfile,
        keyfile=keyfile,
        self_signed=self_signed,
        passive_ports=table.take("passive_ports", v.port_range, range(50000, 50101)),
        masquerade_address=table.take("masquerade_address", o.text, ""),
    )
    table.finish()
    return settings


def _read_smtp(table: v.TableReader, base: Path) -> SmtpSettings:
    settings = SmtpSettings(
        host=table.take("host", o.non_empty_text, "localhost"),
        port=table.take("port", o.integer(1, 65535), 25),
        security=table.take("security", o.choice("starttls", "ssl", "none"), "starttls"),
        username=table.take("username", o.text, ""),
        password_file=table.take("password_file", readable_secret_file(base), None),
        sender=table.take("from", v.email_address, "dropd@localhost"),
        admin=table.take("admin", v.email_list, ()),
        timeout=table.take("timeout", o.duration, 30.0),
        ca_file=table.take("ca_file", _optional_file(base), None),
        max_attachment=table.take("max_attachment", o.byte_size, 5_000_000),
        digest_at=table.take("digest_at", o.time_of_day, None),
        retry=table.take("retry", o.duration, 60.0),
    )
    if settings.username and settings.password_file is None and table.has("username"):
        table.error("password_file", "is required when username is set (AUTH needs a password)")
    if settings.security == "none" and settings.username:
        table.error("username", 'AUTH would send the password in clear text; use security = "starttls" or "ssl"')
    table.finish()
    return settings


def _optional_file(base: Path):
    def parse(value) -> Path | None:
        if not o.text(value).strip():
            return None
        path = v.path_from(base)(value)
        if not path.is_file():
            raise ValueError(f"{path} is not a file")
        return path

    return parse


def _read_metrics(table: v.TableReader) -> MetricsSettings:
    listen = table.take("listen", o.text, "")
    settings = MetricsSettings(listen=None)
    if listen:
        try:
            settings = MetricsSettings(listen=v.listen_address(listen))
        except ValueError as exc:
            table.error("listen", str(exc))
    table.finish()
    return settings


def _read_alerts(table: v.TableReader) -> AlertSettings:
    settings = AlertSettings(
        failed_runs=table.take("failed_runs", o.integer(1, 1000), 3),
        min_free=table.take("min_free", o.percent, 0.05),
        expiry_warning=table.take("expiry_warning", o.duration, 14 * 86400.0),
        interval=table.take("interval", o.duration, 60.0),
    )
    table.finish()
    return settings


def _read_security(table: v.TableReader) -> SecuritySettings:
    settings = SecuritySettings(
        max_failures=table.take("max_failures", o.integer(1, 1000), 5),
        window=table.take("window", o.duration, 600.0),
        ban=table.take("ban", o.duration, 1800.0),
        login_grace_time=table.take("login_grace_time", o.duration, 30.0),
        max_unauthenticated=table.take("max_unauthenticated", o.integer(1, 100_000), 50),
        max_unauthenticated_per_address=table.take("max_unauthenticated_per_address", o.integer(1, 100_000), 5),
        max_sessions_per_address=table.take("max_sessions_per_address", o.integer(1, 100_000), 20),
        max_auth_attempts=table.take("max_auth_attempts", o.integer(1, 100), 3),
        max_handles_per_session=table.take("max_handles_per_session", o.integer(1, 100_000), 256),
        max_channels_per_connection=table.take("max_channels_per_connection", o.integer(1, 1000), 10),
    )
    table.finish()
    per_address, total = settings.max_unauthenticated_per_address, settings.max_unauthenticated
    if per_address and total and per_address > total:
        table.error("max_unauthenticated_per_address", "cannot be larger than max_unauthenticated")
    return settings


def load_config(file: str | Path, skip_broken_partners: bool = False, load_keys: bool = False) -> Config:
    """Read and validate the whole configuration; raise ConfigInvalid with every error.

    `skip_broken_partners` (read-only commands) leaves out partner files with errors and
    lists their errors in `Config.skipped` instead, as long as dropd.toml itself is good.
    `load_keys` (check-config, the daemon's start and reload) also loads every push key with
    its passphrase, so that a key that cannot be used is a config error, not a failed run."""
    file = Path(file).resolve()
    errors: list[v.ConfigError] = []
    main = _read_main(file, _read_toml(file), errors)
    partners_dir = main.get("partners_dir")
    main_errors = len(errors)
    partners = _read_partners(errors, partners_dir) if partners_dir else {}
    if main["smtp"] is None:
        errors += _notify_without_smtp(partners)
    if main["web"] is not None and main_errors == 0:
        errors += unknown_staff_partners(file, main["web"], partners)
    if load_keys:
        errors += _unusable_keys(partners)
    skipped = ()
    if skip_broken_partners and main_errors == 0 and len(errors) > 0:
        skipped = tuple(errors)
        broken = {Path(error.file) for error in errors}
        partners = {name: partner for name, partner in partners.items() if partner.source not in broken}
        errors = []
    if errors:
        raise ConfigInvalid(errors)
    sections = {key: main[key] for key in ("daemon", "sftp", "ftp", "smtp", "security", "alerts", "metrics", "web")}
    return Config(file, partners=partners, skipped=skipped, **sections)


def _present(table: v.TableReader, key: str, path: Path) -> bool:
    """Whether `path` exists; True (with the error recorded) when it cannot even be looked at."""
    try:
        return path.exists()
    except OSError as exc:
        table.error(key, f"{path} cannot be looked at: {exc.strerror}")
        return True


def control_socket_of(file: Path) -> Path:
    """The control socket `file` names (`[daemon] control_socket`, or state_dir's), read
    without checking the rest: what `dropd reload` needs, where the service's credentials
    (TLS keys) are out of its reach; the daemon checks the whole config itself."""
    errors: list = []
    daemon = v.TableReader(errors, file, "", _read_toml(file)).sub("daemon", required=True)
    if daemon is not None:
        path = v.path_from(file.parent)
        state_dir = daemon.take("state_dir", path)
        socket_path = daemon.take("control_socket", path, state_dir / "control.sock" if state_dir else None)
        if socket_path is not None:
            return socket_path
    raise ConfigInvalid(errors or [v.ConfigError(str(file), "daemon.state_dir", "is required")])


def _read_toml(file: Path) -> dict:
    try:
        with open(file, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigInvalid([v.ConfigError(str(file), "", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid([v.ConfigError(str(file), "", f"is not valid TOML: {exc}")]) from None


def _read_main(file: Path, document: dict, errors: list) -> dict:
    """dropd.toml's sections (None where absent or broken) and `partners_dir`; errors recorded."""
    base = file.parent
    top = v.TableReader(errors, file, "", document)
    daemon_table = top.sub("daemon", required=True)
    before = len(errors)
    daemon_values = _read_daemon(daemon_table, base) if daemon_table else {}

    def optional(name, read):
        table = top.sub(name)
        return read(table, base) if table else None

    def defaulted(name, read):
        return read(top.sub(name) or v.TableReader(errors, file, name, {}))

    main = dict(
        daemon=DaemonSettings(**daemon_values) if daemon_values and len(errors) == before else None,
        partners_dir=daemon_values.get("partners_dir"),
        sftp=optional("sftp", _read_sftp),
        ftp=optional("ftp", _read_ftp),
        smtp=optional("smtp", _read_smtp),
        security=defaulted("security", _read_security),
        alerts=defaulted("alerts", _read_alerts),
        metrics=defaulted("metrics", _read_metrics),
        web=read_web(top.sub("web") or v.TableReader(errors, file, "web", {}), base),
    )
    top.finish()
    sftp, ftp = main["sftp"], main["ftp"]
    if sftp is None and ftp is None and daemon_table is not None:
        errors.append(v.ConfigError(str(file), "", "enable at least one of [sftp] and [ftp]"))
    if sftp and ftp and sftp.listen == ftp.listen:
        errors.append(v.ConfigError(str(file), "ftp.listen", "is the same address as sftp.listen"))
    return main


def _notify_without_smtp(partners: dict[str, Partner]) -> list[v.ConfigError]:
    return [
        v.ConfigError(
            str(partner.source),
            f"feed[{feed.name}].notify",
            "addresses are set but dropd.toml has no [smtp] section to send through",
        )
        for partner in partners.values()
        for feed in partner.feeds
        if feed.notify
    ]


def _unusable_keys(partners: dict[str, Partner]) -> list[v.ConfigError]:
    errors = []
    for partner in partners.values():
        for feed in partner.feeds:
            destination = feed.destination
            if destination is None or destination.private_key_file is None:
                continue
            try:
                load_private_key(destination.private_key_file, destination.passphrase_file)
            except KeyUnusable as exc:
                errors.append(
                    v.ConfigError(str(partner.source), f"feed[{feed.name}].destination.private_key_file", str(exc))
                )
    return errors


def _read_partners(errors: list, partners_dir: Path) -> dict[str, Partner]:
    if not partners_dir.is_dir():
        errors.append(v.ConfigError(str(partners_dir), "", "partners_dir is not a directory"))
        return {}
    partners: dict[str, Partner] = {}
    feed_owner: dict[str, Path] = {}
    for file in sorted(partners_dir.glob("*.toml")):
        partner = read_partner(errors, file)
        if partner is None:
            continue
        if partner.name in partners:
            errors.append(
                v.ConfigError(
                    str(file), "partner.name", f"{partner.name!r} is also defined in {partners[partner.name].source}"
                )
            )
            continue
        for feed in partner.feeds:
            if feed.name in feed_owner:
                errors.append(
                    v.ConfigError(
                        str(file), f"feed[{feed.name}].name", f"feed name is also used in {feed_owner[feed.name]}"
                    )
                )
            feed_owner[feed.name] = file
        partners[partner.name] = partner
    return partners
