"""The FTP server (pyftpdlib), explicit TLS by default: speaks FTP, leaves the rest to the drop zone.

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
import sys
import threading

import structlog
from OpenSSL import SSL
from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.exceptions import _FileReadWriteError, _RetryError
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.handlers.ftp import control as pyftpdlib_control
from pyftpdlib.log import logger as pyftpdlib_logger
from pyftpdlib.servers import ThreadedFTPServer

from daemon.dropzone.accept_pause import AcceptPause
from daemon.dropzone.data_tls import TLS12_CIPHERS, DataTlsConnection, data_tls_context
from daemon.dropzone.gatekeeper import LoginRefused
from daemon.dropzone.jail import JailError
from daemon.dropzone.peers import peer_gone
from daemon.dropzone.sessions import PartnerSession

log = structlog.get_logger("dropd.ftp")


def _reason_of(err) -> str:
    """What an FTP error reply says: the sentence our session gave (why a folder cannot be
    removed, a reserved name), else the system's text for the error number."""
    if isinstance(err, OSError):
        return err.strerror or os.strerror(err.errno or 0)
    return str(err)


# pyftpdlib replies with os.strerror(errno) alone and drops the exception's own sentence, so a
# partner read "550 Permission denied." for "this folder is used by a feed". Its control
# handler looks `strerror` up in its module at each reply; ours answers instead (checked at
# start-up: daemon/dependency_checks.py).
pyftpdlib_control.strerror = _reason_of

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
    """A file being sent, as pyftpdlib reads it; the session's `Download` underneath."""

    def __init__(self, download):
        self._download = download
        self._file = os.fdopen(os.dup(download.fd), "rb")
        self.name = str(download.path)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def close(self) -> None:
        """pyftpdlib closes the file without a data transfer when the RETR fails early."""
        self.finish(0, completed=False)

    def finish(self, sent: int, completed: bool) -> None:
        if not self._file.closed:
            self._file.close()
        self._download.finish(sent, completed)


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
        virtual = self.fs2ftp(filename)
        if "r" in mode and "+" not in mode:
            return _DownloadFile(self.session.open_download(virtual))
        keep = "a" in mode or "+" in mode
        upload = self.session.begin_upload(virtual, append=keep and os.path.exists(filename))
        position = os.fstat(upload.fd).st_size if "a" in mode else 0
        return _UploadFile(upload, position)

    def mkstemp(self, suffix="", prefix="", dir=None, mode="wb"):
        raise PermissionError(errno.EPERM, "STOU is not supported; upload with STOR")

    def listdir(self, path):
        return [name for name in os.listdir(path) if self.session.visible(name)]

    listdirinfo = listdir

    def mkdir(self, path):
        self.session.make_folder(self.fs2ftp(path))

    def rmdir(self, path):
        self.session.remove_folder(self.fs2ftp(path))

    def remove(self, path):
        self.session.remove_file(self.fs2ftp(path))

    def rename(self, src, dst):
        self.session.rename(self.fs2ftp(src), self.fs2ftp(dst), replace=True)

    def chmod(self, path, mode):
        self.session.change_mode(self.fs2ftp(path), mode)

    def utime(self, path, timeval):
        self.session.set_times(self.fs2ftp(path), timeval, timeval)

    def readlink(self, path):
        raise PermissionError(errno.EPERM, "Links are not followed", path)


class _PartnerAuthorizer:
    """pyftpdlib's authorizer interface, answered by the drop zone's gatekeeper."""

    def __init__(self, zone):
        self.zone = zone

    def validate_authentication(self, username, password, handler):
        gatekeeper = self.zone.gatekeeper
        try:
            partner = gatekeeper.check_password(username, password, handler.remote_ip, handler.client_gone)
        except LoginRefused as refused:
            gatekeeper.refused("ftp", username, handler.remote_ip, refused, "password", handler.ticket)
            if self.zone.is_banned(handler.remote_ip):
                # pyftpdlib answers 530 after its delay, then disconnects at the last attempt.
                handler.attempted_logins = handler.max_login_attempts - 1
            raise AuthenticationFailed("Authentication failed.") from None
        handler.ticket.logged_in()
        gatekeeper.accepted("ftp", partner, handler.remote_ip, "password")
        handler.start_session(partner)

    def get_home_dir(self, username):
        return str(self.zone.home_of(self.zone.gatekeeper.partners[username]))

    def has_user(self, username):
        return self.zone.knows(username)

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


def _not_stored_reply(exc: OSError) -> str:
    """552 past the partner's quota (RFC 959: "exceeded storage allocation"), 452 when the
    disk is full ("insufficient storage space"), else 451."""
    code = 552 if exc.errno == errno.EDQUOT else 452 if exc.errno in (errno.ENOSPC, errno.EFBIG) else 451
    return f"{code} {exc.strerror or 'Write error'}; the upload was not stored."


class _TransferClose:
    """Data-channel close: settle the upload (publish or drop) before the reply goes out."""

    def handle_error(self):
        """A write to the upload failed: answer 452/451 on the control connection, keep the
        session, and drop the upload. Any other error is pyftpdlib's to handle."""
        failure = sys.exc_info()[1]
        cause = failure.__cause__ if isinstance(failure, _FileReadWriteError) else failure
        if not (self.receive and isinstance(cause, OSError) and isinstance(self.file_obj, _UploadFile)):
            return super().handle_error()
        self._resp = (_not_stored_reply(cause), pyftpdlib_logger.debug)
        self.transfer_finished = False
        self.close()

    def close(self):
        upload_file = self.file_obj
        if not self._closed and isinstance(upload_file, _UploadFile) and not upload_file.settled:
            upload_file.settled = True
            session = self.cmd_channel.session
            closed_cleanly = getattr(self, "tls_end", None) == "close_notify"
            if upload_file.upload.failure is not None:
                try:  # a write failed (a full disk, the quota): recorded as failed, with why
                    session.finish_upload(upload_file.upload)
                except OSError:
                    pass  # the reply (`handle_error`) says so already
            elif not self.transfer_finished or not (closed_cleanly or self.cmd_channel.control_connected()):
                session.abort_upload(upload_file.upload, "connection lost")
                self.transfer_finished = False
            else:
                try:
                    session.finish_upload(upload_file.upload)
                except OSError as exc:
                    self._resp = (_not_stored_reply(exc), pyftpdlib_logger.debug)
                    self.transfer_finished = False
        elif not self._closed and isinstance(upload_file, _DownloadFile):
            upload_file.finish(self.get_transmitted_bytes(), self.transfer_finished)
        super().close()


class _PlainDTP(_TransferClose, DTPHandler):
    pass


class _TlsDTP(_TransferClose, TLS_DTPHandler):
    """The TLS data channel: TLS 1.2 or 1.3 without session tickets (`data_tls`), every
    record read, and how the stream ended.

    Reading goes on after each readiness event until TLS wants more bytes from the socket,
    so no decrypted record waits inside the TLS layer when the end of the stream arrives.
    `tls_end` says how the stream ended: "close_notify" when the client closed TLS cleanly,
    "eof" when the TCP connection ended without it (a killed client, or one that never sends
    close_notify), where the control-connection check decides.
    """

    tls_end: str | None = None

    def secure_connection(self, ssl_context):
        """As pyOpenSSL's mixin does it, over `DataTlsConnection` and the data context."""
        self._ssl_requested = True
        try:
            self.socket = DataTlsConnection(self.cmd_channel.get_data_ssl_context(), self.socket)
        except (OSError, ValueError):  # the client came and went at once
            self.close()
            return
        self._ssl_accepting = True

    def use_sendfile(self) -> bool:
        """Never: sendfile would bypass TLS (pyftpdlib tells TLS apart by pyOpenSSL's class)."""
        return False

    def handle_read_event(self):
        if not self._ssl_requested or self._ssl_accepting or self._ssl_closing:
            return super().handle_read_event()
        with self._handle_ssl_want_rw():
            self._ssl_want_read = False
            while not self._closed and self.receive:
                received = self.tot_bytes_received
                DTPHandler.handle_read(self)
                if self.tot_bytes_received == received:
                    break

    def recv(self, buffer_size):
        if not self._ssl_established:
            return super().recv(buffer_size)
        try:
            data = self.socket.recv(buffer_size)
        except SSL.WantReadError as exc:
            self._ssl_want_read = True
            raise _RetryError from exc
        except SSL.WantWriteError as exc:
            self._ssl_want_write = True
            raise _RetryError from exc
        except SSL.ZeroReturnError:
            self.tls_end = "close_notify"
        except (SSL.SysCallError, SSL.Error, OSError):
            self.tls_end = "eof"
        else:
            if data:
                return data
            self.tls_end = "eof"
        DTPHandler.handle_close(self)
        return b""


class _SessionHandling:
    """Control-channel behaviour shared by the plain and the TLS handler."""

    zone = None
    session: PartnerSession | None = None
    ticket = None

    def handle(self):
        """The server admitted this connection (`_FtpServer.handle_accepted`): take its ticket."""
        self.ticket = self.server.admitted
        self.server.admitted = None
        raw = self._raw_socket = self.socket
        self.ticket.close_hook = lambda reason: raw.shutdown(socket.SHUT_RDWR)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()

    def handle_error(self):
        """A connection that breaks (reset, closed under us by a ban, a TLS record that does
        not decrypt) is one rate-limited log line, not a traceback; anything else is
        pyftpdlib's to report."""
        failure = sys.exc_info()[1]
        if isinstance(failure, SSL.Error):
            reason, error = "tls-error", _tls_error_text(failure)
            self._error = True  # no TLS shutdown on a connection whose TLS is broken
        elif isinstance(failure, OSError):
            reason, error = "connection-error", failure.strerror or str(failure)
        else:
            return super().handle_error()
        self.zone.refusals("connection.closed", self.remote_ip, reason, protocol="ftp", error=error)
        self.close()

    def start_session(self, partner) -> None:
        """Called on a good password, before pyftpdlib builds the file system on the session."""
        if self.session is not None:
            self.session.close("logged in again")
        self.session = self.zone.open_session(partner, "ftp", self.remote_ip)

    def ftp_MLSD(self, path):
        """A folder that does not exist is 550, as rclone (and most clients) expect to create it;
        pyftpdlib answers 501, which RFC 3659 reserves for a path that is not a folder."""
        if not os.path.lexists(path):
            self.respond("550 No such directory.")
            return None
        return super().ftp_MLSD(path)

    def client_gone(self) -> bool:
        """True once the client has closed the control connection (or it was closed under it)."""
        return self.ticket.closed or peer_gone(self._raw_socket)

    def control_connected(self) -> bool:
        """False when the client has closed the control connection (peeked, never read).

        A killed client's two connections close within a millisecond of each other, in no
        fixed order, so the control connection gets a moment to show its end of file. A
        live client is waiting for our reply and sends nothing meanwhile.
        """
        try:
            readable, _, _ = select.select([self._raw_socket], [], [], CONTROL_CLOSE_WAIT)
        except (OSError, ValueError):
            return False
        return not readable or not peer_gone(self._raw_socket)

    def close(self):
        super().close()
        self.connection_over()

    def connection_over(self) -> None:
        """Give the connection's admission slot back and end its session (idempotent)."""
        if self.ticket is not None:
            self.ticket.close()
        if self.session is not None:
            self.session.close()


def _tls_error_text(error: SSL.Error) -> str:
    """OpenSSL's reasons ("bad record mac"), without the nested tuples pyOpenSSL carries."""
    reasons = [entry[2] for entry in (error.args[0] if error.args and isinstance(error.args[0], list) else [])]
    return ", ".join(reason for reason in reasons if reason) or str(error) or type(error).__name__


def tls_context(certfile: str, keyfile: str) -> SSL.Context:
    """The control connection's context: Mozilla's "intermediate" profile, TLS 1.2 and 1.3,
    forward secrecy and AEAD suites only."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.use_certificate_chain_file(certfile)
    context.use_privatekey_file(keyfile)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(TLS12_CIPHERS.encode())
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
    return context


class _TlsContexts:
    """The control connection's TLS context (pyOpenSSL, as pyftpdlib wants it) and the data
    connections' (the standard library's, see `data_tls`)."""

    data_ssl_context = None

    @classmethod
    def get_ssl_context(cls):
        if cls.ssl_context is None:
            cls.ssl_context = tls_context(cls.certfile, cls.keyfile)
            cls.data_ssl_context = data_tls_context(cls.certfile, cls.keyfile)
        return cls.ssl_context

    @classmethod
    def get_data_ssl_context(cls):
        cls.get_ssl_context()
        return cls.data_ssl_context


def _handler_class(settings, zone):
    tls = settings.tls == "required"
    base = TLS_FTPHandler if tls else FTPHandler
    attributes = dict(
        zone=zone,
        authorizer=_PartnerAuthorizer(zone),
        abstracted_fs=_JailedFS,
        dtp_handler=_TlsDTP if tls else _PlainDTP,
        passive_ports=list(settings.passive_ports),
        masquerade_address=settings.masquerade_address or None,
        banner="dropd ready.",
        auth_failed_timeout=1,
        max_login_attempts=zone.max_auth_attempts,
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
        )
    bases = (_SessionHandling, _TlsContexts, base) if tls else (_SessionHandling, base)
    return type("DropdFtpHandler", bases, attributes)


class _FtpServer(ThreadedFTPServer):
    """pyftpdlib's threaded server, admitting each connection through the gatekeeper first.

    A refused connection gets its 421 and is closed here, before a handler or a thread
    exists for it.
    """

    def __init__(self, address, handler, connections):
        super().__init__(address, handler)
        self.connections = connections
        self.admitted = None
        self._pause = AcceptPause("ftp")

    def handle_accept(self):
        """pyftpdlib re-raises a failed accept other than ECONNABORTED, and its error handler
        then closes the listener: at the descriptor limit the FTP server stopped for good.
        Here the listener stops asking to be read for a pause and then goes on."""
        try:
            super().handle_accept()
        except OSError as exc:
            pause = self._pause.failed(exc, sleep=False)
            self.modify_ioloop_events(0)
            self.ioloop.call_later(pause, self._resume_accepting, _errback=self.handle_error)
        else:
            self._pause.succeeded()

    def _resume_accepting(self) -> None:
        if not self._closed:
            self.modify_ioloop_events(self.ioloop.READ)

    def _loop(self, handler):
        """A connection's own thread, from its first event to its end.

        pyftpdlib ends a connection along several paths, and its TLS error paths
        (`SSLConnectionMixin.handle_error`, `_do_ssl_shutdown`) close the socket through
        `FTPHandler.close` without the handler's own `close`: a connection that sent a bad
        TLS record stayed counted as "not logged in" for good. Whatever path it took, the
        connection is over when its thread's loop returns, so its ticket and its session end
        here (both are safe to end twice)."""
        try:
            super()._loop(handler)
        finally:
            handler.connection_over()

    def handle_accepted(self, sock, addr):
        ticket = self.connections.admit(addr[0], "ftp")
        if ticket is None:
            try:
                sock.sendall(b"421 Too many connections or failed logins from your address; try again later.\r\n")
            except OSError:
                pass
            sock.close()
            return
        self.admitted = ticket
        try:
            super().handle_accepted(sock, addr)
        finally:
            if self.admitted is ticket:  # no handler took it
                self.admitted = None
                ticket.close()


class FtpServer:
    """Controller: `start()` returns once the port listens; `stop()` is safe to call twice."""

    def __init__(self, settings, zone):
        self.settings = settings
        self.zone = zone
        self.handler = _handler_class(settings, zone)
        self._server: ThreadedFTPServer | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._closed = threading.Event()

    @property
    def serving(self) -> bool:
        """True while the accept loop runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address[:2]

    def start(self) -> None:
        if self.settings.tls == "off":
            log.warning("ftp.plain_text", message="FTP without TLS: passwords and files cross the network in clear")
        host, port = self.settings.listen
        try:
            self._server = _FtpServer(self.settings.listen, self.handler, self.zone.connections)
        except OSError as exc:
            # pyftpdlib raises the bind's OSError wrapped in another, whose strerror is None.
            cause = exc.args[0] if exc.args and isinstance(exc.args[0], OSError) else exc
            why = cause.strerror or str(cause)
            raise RuntimeError(f"cannot listen for FTP on {host}:{port} (ftp.listen): {why}") from exc
        self._running.set()
        self._thread = threading.Thread(target=self._serve, name="ftp-accept", daemon=True)
        self._thread.start()
        log.info(
            "server.listening", protocol="ftp", address=f"{self.address[0]}:{self.address[1]}", tls=self.settings.tls
        )

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
