"""The SFTP server (paramiko): speaks SFTP, and leaves everything else to `PartnerSession`.

One accept thread; paramiko gives each connection a transport thread and each SFTP channel
a subsystem thread. Sockets get TCP_NODELAY: without it Nagle's algorithm and delayed ACKs
hold small status replies back and uploads stall 20-40 ms at a time.
"""

import errno
import os
import socket
import threading
import time

import paramiko
import structlog
from paramiko.sftp import (
    CMD_CLOSE,
    SFTP_FAILURE,
    SFTP_OK,
    SFTP_OP_UNSUPPORTED,
    SFTP_PERMISSION_DENIED,
)

from daemon.gatekeeper import LoginRefused
from daemon.host_keys import load_host_keys
from daemon.jail import JailError
from daemon.sessions import Download, PartnerSession, partner_home

log = structlog.get_logger("dropd.sftp")

WINDOW_SIZE = 8 * 1024 * 1024
# An SFTP write of 32 KiB plus its headers does not fit a 32 KiB SSH packet: clients would
# send every write as two packets. 64 KiB lets each go as one (about 12 % faster uploads).
MAX_PACKET = 65536


def _sftp_error(exc: Exception) -> int:
    if isinstance(exc, JailError):
        return SFTP_PERMISSION_DENIED
    if isinstance(exc, OSError) and exc.errno is not None:
        return paramiko.SFTPServer.convert_errno(exc.errno)
    return SFTP_FAILURE


def _apply_attributes(session: PartnerSession, path: str, attr: paramiko.SFTPAttributes) -> None:
    """Apply mode, times and size; ownership changes are ignored (the daemon owns every file)."""
    if attr._flags & attr.FLAG_PERMISSIONS:
        session.change_mode(path, attr.st_mode)
    if attr._flags & attr.FLAG_AMTIME:
        session.set_times(path, attr.st_atime, attr.st_mtime)
    if attr._flags & attr.FLAG_SIZE:
        os.truncate(session.existing(path), attr.st_size)


def _apply_upload_attributes(descriptor: int, attr: paramiko.SFTPAttributes) -> None:
    """The same, on an upload still being written (its temporary file)."""
    if attr._flags & attr.FLAG_PERMISSIONS:
        os.chmod(descriptor, (attr.st_mode & 0o770) | 0o600)
    if attr._flags & attr.FLAG_AMTIME:
        os.utime(descriptor, (attr.st_atime, attr.st_mtime))
    if attr._flags & attr.FLAG_SIZE:
        os.truncate(descriptor, attr.st_size)


class _UploadHandle(paramiko.SFTPHandle):
    def __init__(self, session: PartnerSession, upload, flags: int):
        super().__init__(flags)
        self.session = session
        self.upload = upload

    def write(self, offset, data):
        try:
            self.upload.write_at(offset, data)
        except OSError as exc:
            return _sftp_error(exc)
        return SFTP_OK

    def read(self, offset, length):
        return os.pread(self.upload.fd, length, offset)

    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.upload.fd))

    def chattr(self, attr):
        try:
            _apply_upload_attributes(self.upload.fd, attr)
        except OSError as exc:
            return _sftp_error(exc)
        return SFTP_OK

    def close(self) -> int:
        """Publish the upload; a status other than SFTP_OK tells the client it was not stored."""
        if self.upload.finished:
            return SFTP_OK
        try:
            self.session.finish_upload(self.upload)
        except OSError as exc:
            return _sftp_error(exc)
        return SFTP_OK


class _DownloadHandle(paramiko.SFTPHandle):
    def __init__(self, download: Download, flags: int):
        super().__init__(flags)
        self.download = download
        self.sent = 0

    def read(self, offset, length):
        data = os.pread(self.download.fd, length, offset)
        self.sent += len(data)
        return data

    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.download.fd))

    def close(self) -> int:
        self.download.finish(self.sent, completed=True)
        return SFTP_OK


class _SftpSubsystem(paramiko.SFTPServer):
    """paramiko's SFTP server, except that closing a file answers with the handle's own status.

    paramiko answers every CLOSE with OK and ignores what the handle's close() returns, so a
    client whose upload could not be stored (a full disk) would be told it succeeded.
    """

    def _process(self, t, request_number, msg):
        if t == CMD_CLOSE:
            position = msg.packet.tell()
            handle = self.file_table.pop(msg.get_binary(), None)
            if handle is not None:
                status = handle.close()
                self._send_status(request_number, status if isinstance(status, int) else SFTP_OK)
                return
            msg.packet.seek(position)
        super()._process(t, request_number, msg)


class _JailedSFTP(paramiko.SFTPServerInterface):
    """SFTP requests mapped onto the partner's jailed home."""

    def __init__(self, server: "_SshAuth", *args, **kwargs):
        super().__init__(server, *args, **kwargs)
        self.auth = server
        self.session: PartnerSession | None = None

    def session_started(self):
        self.session = self.auth.new_session()

    def session_ended(self):
        if self.session:
            self.session.close()

    def _attributes(self, path, follow=True):
        try:
            real = self.session.resolve(path)
            if not self.session.visible(real.name):
                raise FileNotFoundError(errno.ENOENT, "no such file", path)
            return paramiko.SFTPAttributes.from_stat(os.stat(real) if follow else os.lstat(real))
        except (OSError, JailError) as exc:
            return _sftp_error(exc)

    def stat(self, path):
        return self._attributes(path)

    def lstat(self, path):
        return self._attributes(path, follow=False)

    def list_folder(self, path):
        try:
            real = self.session.resolve(path)
            entries = []
            with os.scandir(real) as scan:
                for entry in scan:
                    if self.session.visible(entry.name):
                        entries.append(
                            paramiko.SFTPAttributes.from_stat(entry.stat(follow_symlinks=False), entry.name)
                        )
            return entries
        except (OSError, JailError) as exc:
            return _sftp_error(exc)

    def open(self, path, flags, attr):
        try:
            real = self.session.resolve(path)
            if flags & (os.O_WRONLY | os.O_RDWR):
                exists = real.exists()
                if exists and flags & os.O_CREAT and flags & os.O_EXCL:
                    raise FileExistsError(errno.EEXIST, "file exists", path)
                if not exists and not flags & os.O_CREAT:
                    raise FileNotFoundError(errno.ENOENT, "no such file", path)
                keep_content = exists and not flags & os.O_TRUNC
                upload = self.session.begin_upload(path, append=keep_content)
                return _UploadHandle(self.session, upload, flags)
            return _DownloadHandle(self.session.open_download(path), flags)
        except (OSError, JailError) as exc:
            return _sftp_error(exc)

    def remove(self, path):
        return self._apply(self.session.remove_file, path)

    def rename(self, oldpath, newpath):
        return self._apply(self.session.rename, oldpath, newpath)

    def posix_rename(self, oldpath, newpath):
        return self._apply(self.session.rename, oldpath, newpath, replace=True)

    def mkdir(self, path, attr):
        return self._apply(self.session.make_folder, path)

    def rmdir(self, path):
        return self._apply(self.session.remove_folder, path)

    def chattr(self, path, attr):
        return self._apply(_apply_attributes, self.session, path, attr)

    def canonicalize(self, path):
        try:
            return self.session.jail.virtual(path)
        except JailError:
            return "/"

    def readlink(self, path):
        return SFTP_OP_UNSUPPORTED

    def symlink(self, target_path, path):
        return SFTP_OP_UNSUPPORTED

    @staticmethod
    def _apply(operation, *args, **kwargs):
        try:
            operation(*args, **kwargs)
        except (OSError, JailError) as exc:
            return _sftp_error(exc)
        return SFTP_OK


class _SshAuth(paramiko.ServerInterface):
    """Authentication for one SSH connection, decided by the core's gatekeeper."""

    def __init__(self, core, address: str):
        self.core = core
        self.address = address
        self.partner = None
        self.key_failure_counted = False

    def get_allowed_auths(self, username):
        return ",".join(self.core.gatekeeper.auth_methods(username))

    def check_auth_password(self, username, password):
        gatekeeper = self.core.gatekeeper
        try:
            self.partner = gatekeeper.check_password(username, password, self.address)
        except LoginRefused as refused:
            gatekeeper.refused("sftp", username, self.address, str(refused))
            return paramiko.AUTH_FAILED
        gatekeeper.accepted("sftp", self.partner, self.address, "password")
        return paramiko.AUTH_SUCCESSFUL

    def check_auth_publickey(self, username, key):
        gatekeeper = self.core.gatekeeper
        try:
            partner = gatekeeper.check_key(username, key, self.address)
        except LoginRefused as refused:
            # Clients offer several keys in turn; one connection counts as one failure.
            if not self.key_failure_counted:
                self.key_failure_counted = True
                gatekeeper.refused("sftp", username, self.address, str(refused))
            return paramiko.AUTH_FAILED
        if self.partner is None:
            gatekeeper.accepted("sftp", partner, self.address, "publickey")
        self.partner = partner
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        if kind == "session" and self.partner is not None:
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def new_session(self) -> PartnerSession:
        home = partner_home(self.core.config.daemon.drop_root, self.partner)
        return PartnerSession(self.partner, home, "sftp", self.address, self.core.handoff, self.core.transfers)


class SftpServer:
    """Controller: `start()` returns once the port listens; `stop()` is safe to call twice."""

    def __init__(self, settings, core):
        self.settings = settings
        self.core = core
        self.host_keys = load_host_keys(settings.host_keys)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self._accepting = False

    @property
    def address(self) -> tuple[str, int]:
        return self._listener.getsockname()[:2]

    def start(self) -> None:
        host, port = self.settings.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
        except OSError as exc:
            listener.close()
            raise RuntimeError(f"cannot listen for SFTP on {host}:{port} (sftp.listen): {exc.strerror}") from exc
        listener.listen(128)
        self._listener = listener
        self._accepting = True
        self._thread = threading.Thread(target=self._accept_loop, name="sftp-accept", daemon=True)
        self._thread.start()
        log.info("server.listening", protocol="sftp", address=f"{self.address[0]}:{self.address[1]}")

    def _accept_loop(self) -> None:
        while self._accepting:
            try:
                connection, address = self._listener.accept()
            except OSError:
                if self._accepting:
                    log.exception("server.accept_failed", protocol="sftp")
                    time.sleep(0.1)
                continue
            try:
                self._serve(connection, address[0])
            except Exception:
                log.exception("session.setup_failed", protocol="sftp", remote=address[0])
                connection.close()

    def _serve(self, connection: socket.socket, remote: str) -> None:
        if self.core.gatekeeper.bans.is_banned(remote):
            log.info("connection.refused", protocol="sftp", remote=remote, reason="banned")
            connection.close()
            return
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(
            connection, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET
        )
        for key in self.host_keys:
            transport.add_server_key(key)
        transport.set_subsystem_handler("sftp", _SftpSubsystem, _JailedSFTP)
        with self._lock:
            self._transports = {t for t in self._transports if t.is_active()}
            self._transports.add(transport)
        transport.start_server(event=threading.Event(), server=_SshAuth(self.core, remote))

    def stop_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._thread.join(5)

    def stop(self) -> None:
        self.stop_accepting()
        with self._lock:
            transports, self._transports = list(self._transports), set()
        for transport in transports:
            transport.close()
        for transport in transports:
            transport.join(5)
