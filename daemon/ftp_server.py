"""The FTP server (pyftpdlib), explicit TLS by default: speaks FTP, leaves the rest to the core.

Each connection runs in its own thread (pyftpdlib's ThreadedFTPServer) so that password
hashing and disk work never stall other partners. Uploads go through `AtomicUpload`; the
decision to publish one is taken when its data connection closes and before the
"226 Transfer complete" reply, so a client that renames right after 226 finds its file.
FTP has no end-of-file marker in stream mode: a client killed mid-upload closes its data
connection like a finished one. Its control connection closes at the same moment, so an
upload whose control connection closes with it (within CONTROL_CLOSE_WAIT) is aborted.
"""

import errno
import os
import select
import socket
import threading
from pathlib import Path

import structlog
from OpenSSL import SSL
from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from daemon.gatekeeper import LoginRefused
from daemon.jail import JailError
from daemon.sessions import PartnerSession, partner_home

log = structlog.get_logger("dropd.ftp")

_OUTSIDE = "\x00outside-the-home"
CONTROL_CLOSE_WAIT = 0.1


class _UploadFile:
    """What pyftpdlib writes an upload into: the atomic upload plus a file position."""

    def __init__(self, upload, position: int):
        self.upload = upload
        self.position = position
        self.name = str(upload.final_path)
        self.closed = False
        self.settled = False

    def write(self, data: bytes) -> int:
        self.upload.write_at(self.position, data)
        self.position += len(data)
        return len(data)

    def seek(self, position: int, whence: int = 0) -> int:
        self.position = position
        return position

    def close(self) -> None:
        self.closed = True


class _DownloadFile:
    """A file being sent, counted as an open transfer until it closes."""

    def __init__(self, path: str, transfers):
        self._file = open(path, "rb")
        self._transfers = transfers
        transfers.opened()

    def __getattr__(self, name):
        return getattr(self._file, name)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            self._transfers.closed()


class _JailedFS(AbstractedFS):
    """Every path goes through the partner's jail; a path that escapes is simply invalid."""

    def __init__(self, root, cmd_channel):
        super().__init__(root, cmd_channel)
        self.session: PartnerSession = cmd_channel.session

    def ftp2fs(self, ftppath):
        try:
            return str(self.session.resolve(self.ftpnorm(ftppath)))
        except JailError:
            return _OUTSIDE

    def fs2ftp(self, fspath):
        if fspath == _OUTSIDE:
            return "(outside the home folder)"
        return super().fs2ftp(fspath)

    def validpath(self, path):
        return path != _OUTSIDE

    def chdir(self, path):
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        self.cwd = self.fs2ftp(path)

    def open(self, filename, mode):
        if "r" in mode and "+" not in mode:
            return _DownloadFile(filename, self.cmd_channel.core.transfers)
        virtual = self.fs2ftp(filename)
        keep = "a" in mode or "+" in mode
        upload = self.session.begin_upload(virtual, append=keep and os.path.exists(filename))
        position = os.fstat(upload.fd).st_size if "a" in mode else 0
        return _UploadFile(upload, position)

    def mkstemp(self, suffix="", prefix="", dir=None, mode="wb"):
        raise PermissionError(errno.EPERM, "STOU is not supported; upload with STOR")

    def listdir(self, path):
        return [name for name in os.listdir(path) if self.session.visible(name)]

    listdirinfo = listdir

    def remove(self, path):
        if not self.session.visible(os.path.basename(path)):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        os.remove(path)

    def rename(self, src, dst):
        os.rename(src, dst)
        self.session.renamed(Path(src), Path(dst))

    def chmod(self, path, mode):
        os.chmod(path, (mode & 0o777) | 0o600)

    def readlink(self, path):
        raise PermissionError(errno.EPERM, "Links are not followed", path)


class _PartnerAuthorizer:
    """pyftpdlib's authorizer interface, answered by the core's gatekeeper."""

    def __init__(self, core):
        self.core = core

    def validate_authentication(self, username, password, handler):
        gatekeeper = self.core.gatekeeper
        try:
            partner = gatekeeper.check_password(username, password, handler.remote_ip)
        except LoginRefused as refused:
            gatekeeper.refused("ftp", username, handler.remote_ip, str(refused))
            raise AuthenticationFailed("Authentication failed.") from None
        gatekeeper.accepted("ftp", partner, handler.remote_ip, "password")
        handler.start_session(partner)

    def get_home_dir(self, username):
        return str(partner_home(self.core.config.daemon.drop_root, self.core.gatekeeper.partners[username]))

    def has_user(self, username):
        return username in self.core.gatekeeper.partners

    def has_perm(self, username, perm, path=None):
        return True

    def get_perms(self, username):
        return "elradfmwMT"

    def get_msg_login(self, username):
        return "Logged in."

    def get_msg_quit(self, username):
        return "Goodbye."

    def impersonate_user(self, username, password):
        pass

    def terminate_impersonation(self, username):
        pass


class _TransferClose:
    """Data-channel close: settle the upload (publish or drop) before the reply goes out."""

    def close(self):
        upload_file = self.file_obj
        if not self._closed and isinstance(upload_file, _UploadFile) and not upload_file.settled:
            upload_file.settled = True
            session = self.cmd_channel.session
            if not self.transfer_finished or not self.cmd_channel.control_connected():
                session.abort_upload(upload_file.upload, "connection lost")
                self.transfer_finished = False
            else:
                try:
                    session.finish_upload(upload_file.upload)
                except OSError as exc:
                    self._resp = (f"550 Could not store the file: {exc.strerror}.", log.warning)
                    self.transfer_finished = False
        elif not self._closed and upload_file is not None and not self.receive:
            self.cmd_channel.session.download_finished(
                Path(upload_file.name), self.get_transmitted_bytes(), self.get_elapsed_time(), self.transfer_finished
            )
        super().close()


class _PlainDTP(_TransferClose, DTPHandler):
    pass


class _TlsDTP(_TransferClose, TLS_DTPHandler):
    pass


class _SessionHandling:
    """Control-channel behaviour shared by the plain and the TLS handler."""

    core = None
    session: PartnerSession | None = None

    def handle(self):
        if self.core.gatekeeper.bans.is_banned(self.remote_ip):
            log.info("connection.refused", protocol="ftp", remote=self.remote_ip, reason="banned")
            self.respond("421 Too many failed logins from your address; try again later.")
            self.close_when_done()
            return
        self._raw_socket = self.socket
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()

    def start_session(self, partner) -> None:
        """Called on a good password, before pyftpdlib builds the file system on the session."""
        if self.session is not None:
            self.session.close("logged in again")
        home = partner_home(self.core.config.daemon.drop_root, partner)
        self.session = PartnerSession(partner, home, "ftp", self.remote_ip, self.core.handoff, self.core.transfers)

    def control_connected(self) -> bool:
        """False when the client has closed the control connection (peeked, never read).

        A killed client's two connections close within a millisecond of each other, in no
        fixed order, so the control connection gets a moment to show its end of file. A
        live client is waiting for our reply and sends nothing meanwhile.
        """
        try:
            readable, _, _ = select.select([self._raw_socket], [], [], CONTROL_CLOSE_WAIT)
            if not readable:
                return True
            return self._raw_socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except (OSError, ValueError):
            return False

    def close(self):
        super().close()
        if self.session is not None:
            self.session.close()


def _handler_class(settings, core):
    tls = settings.tls == "required"
    base = TLS_FTPHandler if tls else FTPHandler
    attributes = dict(
        core=core,
        authorizer=_PartnerAuthorizer(core),
        abstracted_fs=_JailedFS,
        dtp_handler=_TlsDTP if tls else _PlainDTP,
        passive_ports=list(settings.passive_ports),
        masquerade_address=settings.masquerade_address or None,
        banner="dropd ready.",
        auth_failed_timeout=1,
        max_login_attempts=3,
        permit_foreign_addresses=False,
        timeout=300,
    )
    if tls:
        attributes.update(
            certfile=str(settings.certfile),
            keyfile=str(settings.keyfile),
            tls_control_required=True,
            tls_data_required=True,
            ssl_context=None,
            ssl_options=SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1 | SSL.OP_NO_COMPRESSION,
        )
    return type("DropdFtpHandler", (_SessionHandling, base), attributes)


class FtpServer:
    """Controller: `start()` returns once the port listens; `stop()` is safe to call twice."""

    def __init__(self, settings, core):
        self.settings = settings
        self.core = core
        self.handler = _handler_class(settings, core)
        self._server: ThreadedFTPServer | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._closed = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address[:2]

    def start(self) -> None:
        if self.settings.tls == "off":
            log.warning("ftp.plain_text", message="FTP without TLS: passwords and files cross the network in clear")
        self._server = ThreadedFTPServer(self.settings.listen, self.handler)
        self._running.set()
        self._thread = threading.Thread(target=self._serve, name="ftp-accept", daemon=True)
        self._thread.start()
        log.info("server.listening", protocol="ftp", address=f"{self.address[0]}:{self.address[1]}", tls=self.settings.tls)

    def _serve(self) -> None:
        try:
            while self._running.is_set():
                self._server.serve_forever(timeout=0.2, blocking=False, handle_exit=False)
            self._server.close()
            self._closed.wait()
            self._server.close_all()
        except Exception:
            log.exception("server.failed", protocol="ftp")

    def reload_certificate(self, settings) -> None:
        """New connections use the new certificate; connected ones keep theirs."""
        if settings.tls == "required":
            self.handler.certfile = str(settings.certfile)
            self.handler.keyfile = str(settings.keyfile)
            self.handler.ssl_context = None
            self.handler.get_ssl_context()

    def stop_accepting(self) -> None:
        self._running.clear()

    def stop(self) -> None:
        self._running.clear()
        self._closed.set()
        if self._thread is not None:
            self._thread.join(10)
