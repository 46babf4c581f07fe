"""`[feed.destination]`: a partner's own server an export feed pushes its files to."""

import base64
import re
from dataclasses import dataclass
from pathlib import Path

from daemon.config import values as v
from daemon.config.secret_files import readable_secret_file
from handlers import option_values as o

FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


@dataclass(frozen=True)
class Destination:
    protocol: str
    """sftp | ftps"""
    host: str
    port: int
    username: str
    password_file: Path | None
    private_key_file: Path | None
    passphrase_file: Path | None
    directory: str
    """An absolute path, or "" for the login directory (seed 000: "optionally add a Directory")."""
    host_key: str | None
    """sftp: the server's pinned host key fingerprint, "SHA256:..." as ssh-keygen -lf prints it."""
    ca_file: Path | None
    """ftps: a CA bundle to verify the server with; the system's store when None."""
    timeout: float
    retry: float
    """The first wait before trying a failed push again (it doubles) while the block is open."""

    @property
    def folder(self) -> str:
        """The directory as a person reads it."""
        return self.directory or "the login directory"

    def path_of(self, name: str) -> str:
        """`name` in the directory (relative to the login directory when none is set)."""
        return f"{self.directory.rstrip('/')}/{name}" if self.directory else name

    @property
    def where(self) -> str:
        return f"{self.protocol}://{self.username}@{self.host}:{self.port}{self.directory}"


def _fingerprint(value) -> str:
    text = o.text(value).strip()
    if not FINGERPRINT.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a host key fingerprint; write it as `ssh-keygen -lf KEY` prints it, like "
            '"SHA256:" and 43 characters of base64'
        )
    base64.b64decode(text[7:] + "=")
    return text


def _absolute(value) -> str:
    path = o.non_empty_text(value)
    if not path.startswith("/"):
        raise ValueError(f"{path!r} must be an absolute path on the partner's server")
    return path.rstrip("/") or "/"


def read_destination(reader, config_dir: Path) -> Destination | None:
    table = reader.sub("destination")
    if table is None:
        return None
    secret = readable_secret_file(config_dir)
    protocol = table.take("protocol", o.choice("sftp", "ftps"), "sftp")
    destination = Destination(
        protocol=protocol,
        host=table.take("host", o.non_empty_text),
        port=table.take("port", o.integer(1, 65535), 22 if protocol == "sftp" else 21),
        username=table.take("username", o.non_empty_text),
        password_file=table.take("password_file", secret, None),
        private_key_file=table.take("private_key_file", secret, None),
        passphrase_file=table.take("passphrase_file", secret, None),
        directory=table.take("directory", _absolute, ""),
        host_key=table.take("host_key", _fingerprint, v.REQUIRED if protocol == "sftp" else None),
        ca_file=table.take("ca_file", secret, None),
        timeout=table.take("timeout", o.duration, 60.0),
        retry=table.take("retry", o.duration, 30.0),
    )
    if not (table.has("password_file") or table.has("private_key_file")):
        table.error("password_file", "a destination needs password_file or private_key_file")
    if protocol == "ftps" and table.has("private_key_file"):
        table.error("private_key_file", "is for sftp; FTPS logs in with password_file")
    if protocol == "ftps" and table.has("host_key"):
        table.error("host_key", "is for sftp; FTPS verifies the server's certificate (ca_file)")
    if protocol == "sftp" and table.has("ca_file"):
        table.error("ca_file", "is for ftps; SFTP pins the server's host_key")
    table.finish()
    return destination


class KeyUnusable(Exception):
    """A private key file that cannot be used; the message names the file and what to do."""


def load_private_key(path: Path, passphrase_file: Path | None):
    """The push key (a paramiko PKey), decrypted with the passphrase from its file when it is
    encrypted; KeyUnusable saying what to fix otherwise. paramiko is imported here, when a key
    is loaded: the commands that never load one do not pay for it (26 MiB, 65 ms)."""
    import paramiko

    passphrase = passphrase_file.read_text(encoding="utf-8").strip("\r\n") if passphrase_file is not None else None
    try:
        return paramiko.PKey.from_path(path, passphrase.encode() if passphrase is not None else None)
    except paramiko.PasswordRequiredException:
        raise KeyUnusable(f"{path} is encrypted: set passphrase_file to a file holding its passphrase") from None
    except (paramiko.SSHException, ValueError, TypeError) as exc:
        if passphrase is None and any(word in str(exc).lower() for word in ("encrypted", "password")):
            raise KeyUnusable(f"{path} is encrypted: set passphrase_file to a file holding its passphrase") from None
        wrong = " (is passphrase_file the right passphrase?)" if passphrase is not None else ""
        raise KeyUnusable(f"cannot load the private key {path}: {exc}{wrong}") from None
    except OSError as exc:
        raise KeyUnusable(f"cannot read the private key {path}: {exc.strerror or exc}") from None
