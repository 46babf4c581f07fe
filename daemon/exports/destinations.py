"""Where an export file goes: the partner's own folder in the drop zone, or their server.

Every destination puts the file under a temporary name, checks it, then renames it to its
real name, so the partner never picks up half a file. A delivery never replaces a file: when
the export's name is taken (two exports in one second, from one feed or two feeds sharing a
folder), it lands under the next free name of `Naming` (`..._2.csv`, `..._3.csv`), and its
companion files (count file) follow that name. Failures are `PushError`s that name
the step (dns, tcp, host-key, auth, directory, permission, upload, verify, rename) and say
whether trying again later can help.
"""

import base64
import errno
import ftplib
import hashlib
import os
import re
import shutil
import socket
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paramiko

from daemon.config.destinations import Destination, KeyUnusable, load_private_key
from daemon.exports.deadline import Deadline
from daemon.exports.errors import PushError
from daemon.temp_names import our_temp_name, remote_temp_name


def fingerprint(key: paramiko.PKey) -> str:
    """ "SHA256:..." as `ssh-keygen -lf` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


MAX_SEQUENCE = 1000
"""Names a delivery tries before it gives up: this many exports with one stamp."""


@dataclass(frozen=True)
class Companion:
    """A file sent after an export, named after the name the export got."""

    local: Path
    name_for: Callable[[str], str]
    fill: Callable[[Path, str], None] | None = None
    """Writes `local` once the export's name is known (a checksum line names the file)."""


class Naming:
    """An export's names: the data file's (`data(n)`: the n-th free one) and its companions',
    each made from the data file's name."""

    def __init__(self, stem: str, extension: str, companions: list[Companion] = ()):
        self.stem = stem
        self.extension = extension
        self.companions = list(companions)
        """Each companion, sent after the data file."""

    def companion_files(self, name: str) -> list[tuple[Path, str]]:
        """(local file, name to send it as) of each companion of the export sent as `name`."""
        found = []
        for companion in self.companions:
            if companion.fill is not None:
                companion.fill(companion.local, name)
            found.append((companion.local, companion.name_for(name)))
        return found

    def data(self, sequence: int) -> str:
        return f"{self.stem}{'' if sequence == 1 else f'_{sequence}'}{self.extension}"

    def candidates(self) -> list[str]:
        return [self.data(sequence) for sequence in range(1, MAX_SEQUENCE + 1)]


class ExportDestination(Protocol):
    """What an export run needs of a destination: where it is (for logs and recaps), and a
    delivery that never replaces a file. A new protocol (say, S3) implements these two and is
    chosen in `destination_for`."""

    where: str

    def deliver(self, local: Path, naming: Naming) -> str:
        """`local` (and `naming`'s companions) delivered under the first free name, which is
        returned; a failure is a `PushError` naming its step."""
        ...


def _all_taken(naming: Naming, where: str) -> PushError:
    return PushError("rename", f"{MAX_SEQUENCE} files named {naming.data(1)} and after it exist in {where}")


class OutboxFolder:
    """The partner's own folder in the drop zone, where they download over SFTP or FTPS."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.where = str(folder)

    def deliver(self, local: Path, naming: Naming) -> str:
        """The file copied in under a hidden temporary name, synced, then linked under the first
        free name (a link never replaces); its companions likewise. Returns the name it got."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise PushError("directory", f"cannot create {self.folder}: {exc.strerror}") from None
        name = self._place(local, naming.candidates())
        if name is None:
            raise _all_taken(naming, str(self.folder))
        for companion, companion_name in naming.companion_files(name):
            if self._place(companion, [companion_name]) is None:
                raise PushError("rename", f"{companion_name} exists already in {self.folder}")
        return name

    def _place(self, local: Path, names: list[str]) -> str | None:
        """`local` under the first of `names` that is free, or None when all are taken."""
        temp = self.folder / our_temp_name()  # never listed to the partner
        try:
            try:
                with open(local, "rb") as source, open(temp, "xb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
                    target.flush()
                    os.fsync(target.fileno())
                os.chmod(temp, 0o640)
                for name in names:
                    try:
                        os.link(temp, self.folder / name)
                    except FileExistsError:
                        continue
                    return name
                return None
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            transient = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise PushError("upload", f"writing in {self.folder} failed: {exc.strerror}", transient) from None


class SftpPush:
    """The partner's SFTP server (paramiko): the host key pinned, then password or key."""

    def __init__(self, destination: Destination):
        self.destination = destination
        self.where = destination.where

    def deliver(self, local: Path, naming: Naming) -> str:
        with self.open() as session:
            return session.send(local, naming)

    @contextmanager
    def open(self):
        """A logged-in `_SftpSession`, closed at the end; every step under the deadline."""
        d = self.destination
        deadline = Deadline(d.timeout, f"{d.host}:{d.port}")
        with deadline.step("tcp", "TCP connection"):
            sock = _tcp(d)
        transport = paramiko.Transport(sock)
        # paramiko's own limits only as a safety net: the deadline closes the connection first.
        slack = 2 * d.timeout + 1
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = slack
        transport.channel_timeout = slack
        deadline.abort = lambda: _abort_ssh(transport, sock)
        try:
            with deadline.step("tcp", "SSH handshake"):
                try:
                    transport.start_client()
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise PushError("tcp", f"no SSH session with {d.host}:{d.port}: {exc}", transient=True) from None
            self._check_host_key(transport)
            with deadline.step("auth", "login"):
                self._authenticate(transport)
            with deadline.step("sftp", "SFTP session"):
                try:
                    sftp = paramiko.SFTPClient.from_transport(transport)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise PushError("sftp", f"{d.host} refused an SFTP session: {exc}", transient=True) from None
            sftp.get_channel().settimeout(slack)
            yield _SftpSession(d, sftp, deadline)
        finally:
            transport.close()

    def _check_host_key(self, transport: paramiko.Transport) -> None:
        d = self.destination
        key = transport.get_remote_server_key()
        offered = fingerprint(key)
        if offered != d.host_key:
            raise PushError(
                "host-key",
                f"{d.host}:{d.port} offered the {key.get_name()} key {offered}, not the pinned {d.host_key}; "
                "nothing was sent (if the partner changed their key, check it with them and update host_key)",
            )

    def _authenticate(self, transport: paramiko.Transport) -> None:
        d = self.destination
        try:
            if d.private_key_file is not None:
                transport.auth_publickey(d.username, load_private_key(d.private_key_file, d.passphrase_file))
            else:
                transport.auth_password(d.username, _secret(d.password_file) or "")
        except KeyUnusable as exc:
            raise PushError("auth", str(exc)) from None
        except paramiko.AuthenticationException as exc:
            raise PushError("auth", f"{d.host} refused the login as {d.username!r}: {exc}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise PushError("auth", f"the connection failed while logging in: {exc}", transient=True) from None


class _RemoteSession(ABC):
    """What both protocols' logged-in pushes share: an export sent, then its companions under
    names made from the name it got; `_send_one` is the protocol's."""

    destination: Destination

    def send(self, local: Path, naming: Naming) -> str:
        """The export and its companions; returns the name the export got."""
        name = self._send_one(local, naming.candidates())
        if name is None:
            raise _all_taken(naming, f"{self.destination.folder} on {self.destination.host}")
        for companion, companion_name in naming.companion_files(name):
            if self._send_one(companion, [companion_name]) is None:
                raise PushError("rename", f"{companion_name} exists already on {self.destination.host}")
        return name

    @abstractmethod
    def _send_one(self, local: Path, names: list[str]) -> str | None:
        """`local` under the first of `names` that is free; None when all are taken."""


class _SftpSession(_RemoteSession):
    """What a logged-in SFTP push does: check the directory, send files."""

    def __init__(self, destination: Destination, sftp: paramiko.SFTPClient, deadline: Deadline):
        self.destination = destination
        self.sftp = sftp
        self.deadline = deadline

    def check_directory(self) -> None:
        """The directory exists and takes a file (a probe written and removed)."""
        d, sftp = self.destination, self.sftp
        with self.deadline.step("directory", "directory check"):
            try:
                sftp.stat(d.directory or ".")
            except OSError as exc:
                raise PushError("directory", f"{d.folder} on {d.host}: {_sftp_error(exc)}") from None
        probe = d.path_of(remote_temp_name("probe"))
        with self.deadline.step("permission", "writing a probe file"):
            try:
                with sftp.open(probe, "wb") as handle:
                    handle.write(b"dropd test-connection\n")
                sftp.remove(probe)
            except OSError as exc:
                raise PushError("permission", f"cannot write in {d.folder} on {d.host}: {_sftp_error(exc)}") from None

    def _send_one(self, local: Path, names: list[str]) -> str | None:
        """`local` under a temporary name, its size checked, then renamed to the first of
        `names` that is free (a plain SFTP rename, which never replaces, and a look first: some
        servers' renames do replace). None, and nothing left behind, when all are taken."""
        d, sftp = self.destination, self.sftp
        label = names[0]
        temp = d.path_of(remote_temp_name(label))
        size = local.stat().st_size
        with self.deadline.step("upload", f"sending {label}"):
            try:
                sftp.put(str(local), temp, callback=self.deadline.progress, confirm=False)
            except (OSError, paramiko.SSHException, EOFError) as exc:
                _remove_quietly(sftp, temp)
                if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.ENOENT):
                    message = f"cannot write in {d.folder} on {d.host}: {_sftp_error(exc)}"
                    raise PushError("permission", message) from None
                message = f"sending {label} to {d.host}:{d.directory or '~'} failed: {_sftp_error(exc)}"
                raise PushError("upload", message, transient=True) from None
        with self.deadline.step("verify", f"the size of {label}"):
            try:
                remote_size = sftp.stat(temp).st_size
            except (OSError, paramiko.SSHException, EOFError) as exc:
                raise PushError(
                    "verify", f"cannot check the size of {temp}: {_sftp_error(exc)}", transient=True
                ) from None
            if remote_size != size:
                _remove_quietly(sftp, temp)
                raise PushError("verify", f"{label} arrived with {remote_size} of {size} bytes", transient=True)
        with self.deadline.step("verify", f"the hash of {label}"):
            self._verify_content(local, temp, label)
        with self.deadline.step("rename", f"renaming {label}"):
            for name in names:
                final = d.path_of(name)
                if _sftp_exists(sftp, final):
                    continue
                try:
                    sftp.rename(temp, final)
                    return name
                except OSError as exc:
                    if _sftp_exists(sftp, final):
                        continue  # taken meanwhile
                    _remove_quietly(sftp, temp)
                    raise PushError(
                        "rename", f"cannot rename {temp} to {name}: {_sftp_error(exc)}", transient=True
                    ) from None
            _remove_quietly(sftp, temp)
            return None

    def _verify_content(self, local: Path, remote: str, label: str) -> None:
        """Where the server hashes files (the check-file extension), its hash of what arrived
        must be ours. A server whose hash differs is asked for the file itself before it is
        believed: paramiko's check-file answers wrongly past 64 KiB. Without check-file (OpenSSH),
        the size checked before is the check."""
        sftp = self.sftp
        try:
            with sftp.open(remote, "rb") as handle:
                algorithm, theirs = _remote_hash(handle)
        except (OSError, paramiko.SSHException, EOFError):
            return
        if algorithm is None or theirs == _file_hash(local, algorithm):
            return
        digest = hashlib.sha256()
        try:
            with sftp.open(remote, "rb") as handle:
                handle.prefetch()
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    self.deadline.progress()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise PushError("verify", f"cannot read {remote} back: {_sftp_error(exc)}", transient=True) from None
        if digest.digest() != _file_hash(local, "sha256"):
            _remove_quietly(sftp, remote)
            raise PushError(
                "verify", f"{label} arrived altered: its content on the server differs from what was sent", True
            )


def _abort_ssh(transport: paramiko.Transport, sock: socket.socket) -> None:
    """Wake whatever waits on the connection: the socket first (a read blocked in the transport's
    thread), then the transport (events waited on without a timeout)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    transport.close()


def _remote_hash(handle: paramiko.SFTPFile) -> tuple[str | None, bytes | None]:
    """The server's hash of an open file: (algorithm, digest), or (None, None) if it has none."""
    for algorithm in ("sha256", "sha1", "md5"):
        try:
            return algorithm, handle.check(algorithm)
        except OSError:
            continue
    return None, None


def _file_hash(path: Path, algorithm: str) -> bytes:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).digest()


class _SessionReusingFtps(ftplib.FTP_TLS):
    """FTP over TLS whose data connections resume the control connection's TLS session:
    vsftpd by default (require_ssl_reuse=YES), and other servers, refuse data connections that
    do not, and Python's ftplib does not."""

    def ntransfercmd(self, cmd, rest=None):
        connection, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            connection = self.context.wrap_socket(connection, server_hostname=self.host, session=self.sock.session)
        return connection, size


class FtpsPush:
    """The partner's FTPS server: explicit TLS, the certificate verified (system store or ca_file)."""

    def __init__(self, destination: Destination):
        self.destination = destination
        self.where = destination.where

    def deliver(self, local: Path, naming: Naming) -> str:
        with self.open() as session:
            name = session.send(local, naming)
            session.quit()
            return name

    @contextmanager
    def open(self):
        """A logged-in `_FtpsSession` in the destination directory, closed at the end."""
        d = self.destination
        deadline = Deadline(d.timeout, f"{d.host}:{d.port}")
        with deadline.step("tcp", "TCP connection"):
            _tcp(d).close()
        context = ssl.create_default_context(cafile=str(d.ca_file) if d.ca_file else None)
        # Socket timeouts only as a safety net: the deadline closes the connection first.
        client = _SessionReusingFtps(context=context, timeout=2 * d.timeout + 1)
        deadline.abort = lambda: _abort_ftp(client)
        try:
            with deadline.step("tcp", "FTP greeting"):
                try:
                    client.connect(d.host, d.port)
                except (OSError, ftplib.Error, EOFError) as exc:
                    raise PushError("tcp", f"no FTPS session with {d.host}:{d.port}: {exc}", transient=True) from None
            with deadline.step("tls", "TLS handshake"):
                try:
                    client.auth()
                except ssl.SSLError as exc:
                    raise PushError("tls", f"TLS with {d.host}:{d.port} failed: {exc.reason or exc}") from None
                except (OSError, ftplib.Error, EOFError) as exc:
                    raise PushError("tls", f"no TLS with {d.host}:{d.port}: {exc}", transient=True) from None
            with deadline.step("auth", "login"):
                try:
                    client.login(d.username, _secret(d.password_file) or "")
                    client.prot_p()
                except ftplib.error_perm as exc:
                    raise PushError("auth", f"{d.host} refused the login as {d.username!r}: {exc}") from None
                except (OSError, ftplib.Error, EOFError) as exc:
                    raise PushError("auth", f"the connection failed while logging in: {exc}", transient=True) from None
            with deadline.step("directory", "changing directory"):
                try:
                    if d.directory:
                        client.cwd(d.directory)
                except ftplib.error_perm as exc:
                    raise PushError("directory", f"{d.folder} on {d.host}: {exc}") from None
                except (OSError, ftplib.Error, EOFError) as exc:
                    raise PushError("directory", f"{d.folder} on {d.host}: {exc}", transient=True) from None
            yield _FtpsSession(d, client, deadline)
        finally:
            client.close()


class _FtpsSession(_RemoteSession):
    """What a logged-in FTPS push does, in the destination directory."""

    def __init__(self, destination: Destination, client: ftplib.FTP_TLS, deadline: Deadline):
        self.destination = destination
        self.client = client
        self.deadline = deadline

    def check_directory(self) -> None:
        probe = remote_temp_name("probe")
        with self.deadline.step("permission", "writing a probe file"):
            try:
                self.client.storbinary(f"STOR {probe}", _Bytes(b"dropd test-connection\n"))
                self.client.delete(probe)
            except ftplib.error_perm as exc:
                raise PushError("permission", f"cannot write in {self.destination.folder}: {exc}") from None
            except (OSError, ftplib.Error, EOFError) as exc:
                raise PushError("permission", f"writing a probe file failed: {exc}", transient=True) from None

    def _send_one(self, local: Path, names: list[str]) -> str | None:
        """`local` under a temporary name, its size checked, then renamed to the first of
        `names` that is free: FTP's rename replaces on most servers, so each name is looked up
        (SIZE) first. None, and nothing left behind, when all are taken."""
        client = self.client
        label = names[0]
        temp = remote_temp_name(label)
        size = local.stat().st_size
        with self.deadline.step("upload", f"sending {label}"):
            try:
                with open(local, "rb") as handle:
                    client.storbinary(f"STOR {temp}", handle, blocksize=1 << 16, callback=self.deadline.progress)
            except (OSError, ftplib.Error, EOFError) as exc:
                _delete_quietly(client, temp)
                raise PushError("upload", f"sending {label} failed: {exc}", transient=True) from None
        with self.deadline.step("verify", f"the size of {label}"):
            try:
                client.voidcmd("TYPE I")
                remote_size = client.size(temp)
            except (OSError, ftplib.Error, EOFError) as exc:
                raise PushError("verify", f"cannot check the size of {temp}: {exc}", transient=True) from None
            if remote_size != size:
                _delete_quietly(client, temp)
                raise PushError("verify", f"{label} arrived with {remote_size} of {size} bytes", transient=True)
            theirs = _ftp_sha256(client, temp)
            if theirs is not None and theirs != _file_hash(local, "sha256").hex():
                _delete_quietly(client, temp)
                raise PushError("verify", f"{label} arrived altered: the server's SHA-256 of it is not ours", True)
        with self.deadline.step("rename", f"renaming {label}"):
            for name in names:
                if _ftp_exists(client, name):
                    continue
                try:
                    client.rename(temp, name)
                    return name
                except (OSError, ftplib.Error, EOFError) as exc:
                    _delete_quietly(client, temp)
                    raise PushError("rename", f"cannot rename {temp} to {name}: {exc}", transient=True) from None
            _delete_quietly(client, temp)
            return None

    def quit(self) -> None:
        with self.deadline.step("rename", "the goodbye"):
            try:
                self.client.quit()
            except (OSError, ftplib.Error, EOFError):
                pass  # every file is in place under its name already


def _abort_ftp(client: ftplib.FTP) -> None:
    """Wake a read blocked on the control connection (a data connection has its own timeout)."""
    if client.sock is not None:
        client.sock.shutdown(socket.SHUT_RDWR)


class _Bytes:
    def __init__(self, data: bytes):
        self._data = data

    def read(self, size: int = -1) -> bytes:
        chunk, self._data = (self._data, b"") if size < 0 else (self._data[:size], self._data[size:])
        return chunk


def destination_for(feed, drop_root: Path, partner) -> ExportDestination:
    if feed.destination is None:
        return OutboxFolder(drop_root / partner.name / feed.path.lstrip("/"))
    return SftpPush(feed.destination) if feed.destination.protocol == "sftp" else FtpsPush(feed.destination)


def _tcp(d: Destination) -> socket.socket:
    try:
        socket.getaddrinfo(d.host, d.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PushError("dns", f"cannot resolve {d.host}: {exc.strerror}", transient=True) from None
    try:
        return socket.create_connection((d.host, d.port), timeout=d.timeout)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise PushError("tcp", f"cannot connect to {d.host}:{d.port}: {reason}", transient=True) from None


def _secret(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8").strip("\r\n") if path is not None else None


def _sftp_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return "permission denied"
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return "no such file or directory"
    return str(exc) or type(exc).__name__


def _sftp_exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
        return True
    except FileNotFoundError:
        return False


def _ftp_sha256(client: ftplib.FTP, name: str) -> str | None:
    """The server's SHA-256 of a file, in hex, where it offers one (HASH after OPTS HASH
    SHA-256, as FileZilla Server and SFTPGo do, or XSHA256, as ProFTPD's mod_digest does);
    None otherwise (vsftpd): the size checked before is then the check."""
    commands = []
    try:
        client.sendcmd("OPTS HASH SHA-256")
        commands.append(f"HASH {name}")
    except ftplib.Error:
        pass
    commands.append(f"XSHA256 {name}")
    for command in commands:
        try:
            reply = client.sendcmd(command)
        except ftplib.error_perm:
            continue
        found = re.search(r"\b[0-9a-fA-F]{64}\b", reply[4:])
        if found:
            return found.group().lower()
    return None


def _ftp_exists(client: ftplib.FTP, name: str) -> bool:
    try:
        client.size(name)
        return True
    except ftplib.error_perm:
        return False


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        sftp.remove(path)
    except (OSError, paramiko.SSHException, EOFError):
        pass


def _delete_quietly(client: ftplib.FTP, name: str) -> None:
    try:
        client.delete(name)
    except (OSError, ftplib.Error, EOFError):
        pass
