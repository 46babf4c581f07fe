"""The SFTP server (paramiko): speaks SFTP, and leaves everything else to `PartnerSession`.

One accept thread; paramiko gives each connection a transport thread and each SFTP channel
a subsystem thread. Sockets get TCP_NODELAY: without it Nagle's algorithm and delayed ACKs
hold small status replies back and uploads stall 20-40 ms at a time.
"""

import errno
import hashlib
import os
import socket
import struct
import threading

import paramiko
import structlog
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_INIT,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_VERSION,
    SFTP_BAD_MESSAGE,
    SFTP_EOF,
    SFTP_FAILURE,
    SFTP_OK,
    SFTP_OP_UNSUPPORTED,
    SFTP_PERMISSION_DENIED,
)

from daemon.dropzone import channel_buffer, channel_data
from daemon.dropzone.accept_pause import AcceptPause
from daemon.dropzone.gatekeeper import LoginRefused
from daemon.dropzone.host_keys import load_host_keys
from daemon.dropzone.jail import JailError
from daemon.dropzone.packetizer import SshTransport
from daemon.dropzone.peers import peer_gone
from daemon.dropzone.sessions import Download, PartnerSession
from daemon.dropzone.zone import DropZone

log = structlog.get_logger("dropd.sftp")

# What current OpenSSH offers by default, minus SHA-1 and CBC (paramiko 5 no longer offers
# SHA-1 key exchange or ssh-rsa signatures at all).
WEAK_ALGORITHMS = {
    "ciphers": ["aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc"],
    "macs": ["hmac-sha1", "hmac-md5", "hmac-sha1-96", "hmac-md5-96"],
    "kex": ["diffie-hellman-group14-sha256", "diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha1",
            "diffie-hellman-group1-sha1"],
}  # fmt: skip

WINDOW_SIZE = 8 * 1024 * 1024
READ_AHEAD = 256 * 1024
# What sshd announces in limits@openssh.com: 256 KiB packets, 255 KiB reads and writes.
MAX_SFTP_PACKET = 256 * 1024
MAX_SFTP_DATA = MAX_SFTP_PACKET - 1024
DATA_HEADER = struct.Struct(">IBII")  # an SFTP DATA reply before its data: length, type, id, data length
EXTENSIONS = (("posix-rename@openssh.com", "1"), ("limits@openssh.com", "1"), ("check-file", "sha256,sha1,md5"))
# check-file: a client verifies what it uploaded by the server's hash of it (dropd's own pushes
# do). paramiko's answer is wrong past 64 KiB (its offset advances by the running total at each
# chunk) and knows no SHA-256; `_SftpSubsystem._check_file` answers instead.
CHECK_FILE_HASHES = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "md5": hashlib.md5}
# A connection closed after a failed attempt first gets the failure answer on its way.
REPLY_GRACE = 0.2
# An SFTP write of 32 KiB plus its headers does not fit a 32 KiB SSH packet: clients would
# send every write as two packets. 64 KiB lets each go as one (about 12 % faster uploads).
MAX_PACKET = 65536


class _Status(int):
    """An SFTP status code carrying the sentence the client shows (paramiko sends a code's
    generic text, "Failure", unless told otherwise; see `_SftpSubsystem._send_status`)."""

    message: str

    def __new__(cls, code: int, message: str):
        status = super().__new__(cls, code)
        status.message = message
        return status


def _sftp_error(exc: Exception) -> int:
    if isinstance(exc, JailError):
        return _Status(SFTP_PERMISSION_DENIED, str(exc))
    if isinstance(exc, OSError) and exc.errno is not None:
        return _Status(paramiko.SFTPServer.convert_errno(exc.errno), exc.strerror or os.strerror(exc.errno))
    return SFTP_FAILURE


def _apply_attributes(session: PartnerSession, path: str, attr: paramiko.SFTPAttributes) -> None:
    """Apply mode, times and size; ownership changes are ignored (the daemon owns every file)."""
    if attr._flags & attr.FLAG_PERMISSIONS:
        session.change_mode(path, attr.st_mode)
    if attr._flags & attr.FLAG_AMTIME:
        session.set_times(path, attr.st_atime, attr.st_mtime)
    if attr._flags & attr.FLAG_SIZE:
        real = session.existing(path)
        _refuse_growth(os.stat(real).st_size, attr.st_size, path)
        os.truncate(real, attr.st_size)


def _refuse_growth(size: int, wanted: int, path: str) -> None:
    """A size may shrink a file, never grow it: growing writes nothing but a hole, and one
    request made a 10 GiB file of them (on a disk every partner shares)."""
    if wanted > size:
        raise PermissionError(errno.EACCES, "a file cannot be grown by setting its size; write its bytes instead", path)


def _apply_upload_attributes(descriptor: int, attr: paramiko.SFTPAttributes) -> None:
    """The same, on an upload still being written (its temporary file)."""
    if attr._flags & attr.FLAG_PERMISSIONS:
        os.chmod(descriptor, (attr.st_mode & 0o770) | 0o600)
    if attr._flags & attr.FLAG_AMTIME:
        os.utime(descriptor, (attr.st_atime, attr.st_mtime))
    if attr._flags & attr.FLAG_SIZE:
        _refuse_growth(os.fstat(descriptor).st_size, attr.st_size, "")
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
        return os.pread(self.upload.fd, min(length, MAX_SFTP_DATA), offset)

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
        self._buffer = bytearray()

    def read(self, offset, length):
        """Up to `length` (at most MAX_SFTP_DATA) bytes at `offset`, in a buffer this handle
        reuses: valid until its next read, which is all a reply needs."""
        length = min(length, MAX_SFTP_DATA)
        if len(self._buffer) < length:
            self._buffer = bytearray(length)
        view = memoryview(self._buffer)[:length]
        count = os.preadv(self.download.fd, [view], offset)
        self.sent += count
        return view[:count]

    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.download.fd))

    def close(self) -> int:
        self.download.finish(self.sent, completed=True)
        return SFTP_OK


class _SftpSubsystem(paramiko.SFTPServer):
    """paramiko's SFTP server, with what it lacks for integrity and speed:

    - closing a file answers with the handle's own status: paramiko answers every CLOSE with
      OK and ignores what the handle's close() returns, so a client whose upload could not
      be stored (a full disk) would be told it succeeded;
    - OpenSSH's `limits@openssh.com` extension is advertised and answered, as sshd does:
      without it OpenSSH's client writes and reads 32 KiB at a time, with it 255 KiB, and
      each request costs a round of Python work whatever its size;
    - `posix-rename@openssh.com`, which paramiko handles, is advertised too;
    - packets are assembled from the channel without re-copying what was already read;
    - a session holds at most `max_handles_per_session` files and folders open: each is a
      descriptor of the daemon's, and one session opening handles without end took them all.
    """

    def _send_server_version(self):
        kind, data = self._read_packet()
        if kind != CMD_INIT:
            raise paramiko.SFTPError("Incompatible sftp protocol")
        message = paramiko.Message()
        message.add_int(3)
        for name, version in EXTENSIONS:
            message.add_string(name)
            message.add_string(version)
        self._send_packet(CMD_VERSION, message)
        return struct.unpack(">I", data[:4])[0]

    def _write_all(self, out):
        """paramiko slices off what each channel send took, copying the rest of a 255 KiB reply
        again and again; a memoryview walks it instead."""
        view, position = memoryview(out), 0
        while position < len(view):
            sent = self.sock.send(view[position:])
            if sent <= 0:
                raise EOFError()
            position += sent

    def _read_all(self, n):
        parts = []
        while n > 0:
            chunk = self.sock.recv(n)
            if not chunk:
                raise EOFError()
            parts.append(chunk)
            n -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_packet(self):
        size = struct.unpack(">I", self._read_all(4))[0]
        if size > MAX_SFTP_PACKET + 1024:
            raise paramiko.SFTPError(f"packet of {size} bytes is larger than the {MAX_SFTP_PACKET} announced")
        data = self._read_all(size)
        return (data[0], data[1:]) if size else (0, b"")

    def _check_file(self, request_number, msg) -> None:
        """The hash of a range of an open file, in blocks (draft-ietf-secsh-filexfer-extensions
        "check-file-handle", by paramiko's name "check-file")."""
        handle, algorithms = msg.get_binary(), msg.get_list()
        start, length, block_size = msg.get_int64(), msg.get_int64(), msg.get_int()
        opened = self.file_table.get(handle)
        if opened is None:
            self._send_status(request_number, SFTP_FAILURE, "invalid handle")
            return
        name = next((algorithm for algorithm in algorithms if algorithm in CHECK_FILE_HASHES), None)
        if name is None:
            self._send_status(
                request_number, SFTP_OP_UNSUPPORTED, f"hashes offered here: {', '.join(CHECK_FILE_HASHES)}"
            )
            return
        if length == 0:
            length = max(0, opened.stat().st_size - start)
        block_size = block_size or length or 1
        if block_size < 256 and block_size < length:
            self._send_status(request_number, SFTP_FAILURE, "block size too small (at least 256)")
            return
        digests, offset, end = [], start, start + length
        while offset < end or not digests:
            digest, block_end = CHECK_FILE_HASHES[name](), min(offset + block_size, end)
            while offset < block_end:
                data = opened.read(offset, min(block_end - offset, 1 << 16))
                if isinstance(data, int) or not data:
                    break
                digest.update(data)
                offset += len(data)
            digests.append(digest.digest())
            if offset < block_end:
                break  # the file ended early
        reply = paramiko.Message()
        reply.add_int(request_number)
        reply.add_string("check-file")
        reply.add_string(name)
        reply.add_bytes(b"".join(digests))
        self._send_packet(CMD_EXTENDED_REPLY, reply)

    def _read(self, request_number, msg) -> None:
        """READ, answered with at most MAX_SFTP_DATA bytes, as sshd (paramiko read whatever a
        client asked, up to 4 GiB at once, into memory), its header and data sent as parts
        (daemon/dropzone/channel_data.py) rather than joined into one reply."""
        handle, offset, length = msg.get_binary(), msg.get_int64(), msg.get_int()
        opened = self.file_table.get(handle)
        if opened is None:
            self._send_status(request_number, SFTP_BAD_MESSAGE, "Invalid handle")
            return
        data = opened.read(offset, min(length, MAX_SFTP_DATA))
        if isinstance(data, int):
            self._send_status(request_number, data)
        elif not data:
            self._send_status(request_number, SFTP_EOF)
        else:
            header = DATA_HEADER.pack(len(data) + 9, CMD_DATA, request_number, len(data))
            channel_data.send(self.sock, (header, data))

    def _send_status(self, request_number, code, desc=None):
        super()._send_status(request_number, code, desc if desc is not None else getattr(code, "message", None))

    def start_subsystem(self, name, transport, channel):
        """paramiko logs a failing subsystem only to its own (silenced) logger."""
        try:
            super().start_subsystem(name, transport, channel)
        except Exception:
            log.exception("sftp.subsystem_failed")

    def _process(self, t, request_number, msg):
        try:
            self._process_request(t, request_number, msg)
        except UnicodeDecodeError:
            # paramiko decodes paths as UTF-8; a client that sends other bytes is told, once.
            auth = self.server.auth
            auth.zone.refusals("sftp.request_refused", auth.address, "path-not-utf8", request=t)
            self._send_status(request_number, SFTP_FAILURE, "the path is not valid UTF-8; names here are UTF-8")
        except Exception:
            log.exception("sftp.request_failed", request=t)
            raise

    def _process_request(self, t, request_number, msg):
        if t == CMD_READ:
            self._read(request_number, msg)
            return
        if t in (CMD_OPEN, CMD_OPENDIR):
            limit = self.server.auth.zone.security.max_handles_per_session
            if len(self.file_table) + len(self.folder_table) >= limit:
                message = f"too many open files in this session (at most {limit}); close some first"
                self._send_status(request_number, SFTP_FAILURE, message)
                return
        if t == CMD_EXTENDED:
            position = msg.packet.tell()
            extension = msg.get_text()
            if extension == "check-file":
                self._check_file(request_number, msg)
                return
            if extension == "limits@openssh.com":
                reply = paramiko.Message()
                reply.add_int(request_number)
                for limit in (MAX_SFTP_PACKET, MAX_SFTP_DATA, MAX_SFTP_DATA, 0):
                    reply.add_int64(limit)
                self._send_packet(CMD_EXTENDED_REPLY, reply)
                return
            msg.packet.seek(position)
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
                        entries.append(paramiko.SFTPAttributes.from_stat(entry.stat(follow_symlinks=False), entry.name))
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
    """Authentication for one SSH connection, decided by the drop zone's gatekeeper.

    At most `max_auth_attempts` failed attempts per connection (OpenSSH's MaxAuthTries);
    then the connection is closed. Failed key offers count once per connection toward the
    address's ban (clients offer several keys in turn), passwords each time; a connection
    that only asked which methods exist ("none") and left counts once when it closes.
    """

    def __init__(self, zone: DropZone, address: str, ticket):
        self.zone = zone
        self.address = address
        self.ticket = ticket
        self.partner = None
        self.transport: paramiko.Transport | None = None
        self.sock: socket.socket | None = None
        """The connection's own socket (under the transport's read-ahead)."""
        self.failed_attempts = 0
        self.counted = False
        self.probed_with = None
        self.closing = False
        """Set when the connection is about to be closed: later attempts are not even checked."""

    def get_allowed_auths(self, username):
        return ",".join(self.zone.gatekeeper.auth_methods(username))

    def check_auth_none(self, username):
        self.probed_with = username
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username, password):
        if self.closing:
            return paramiko.AUTH_FAILED
        gatekeeper = self.zone.gatekeeper
        try:
            partner = gatekeeper.check_password(username, password, self.address, self._client_gone)
        except LoginRefused as refused:
            self.counted = True
            gatekeeper.refused("sftp", username, self.address, refused, "password", self.ticket)
            return self._failed()
        return self._succeeded(partner, "password")

    def check_auth_publickey(self, username, key):
        if self.closing:
            return paramiko.AUTH_FAILED
        gatekeeper = self.zone.gatekeeper
        fingerprint = key.fingerprint
        try:
            partner = gatekeeper.check_key(username, key, self.address)
        except LoginRefused as refused:
            if not self.counted:
                self.counted = True
                gatekeeper.refused("sftp", username, self.address, refused, "publickey", self.ticket, key=fingerprint)
            return self._failed()
        if self.partner is not None:
            return paramiko.AUTH_SUCCESSFUL  # the signed request after a key query
        return self._succeeded(partner, "publickey", key=fingerprint)

    def _client_gone(self) -> bool:
        """True once the client has closed the connection (or it was closed under it): a check
        waiting for its turn is then dropped."""
        return self.ticket.closed or peer_gone(self.sock)

    def _succeeded(self, partner, method: str, **fields) -> int:
        self.partner = partner
        self.ticket.logged_in()
        self.zone.gatekeeper.accepted("sftp", partner, self.address, method, **fields)
        return paramiko.AUTH_SUCCESSFUL

    def _failed(self) -> int:
        """AUTH_FAILED; past the attempt limit, or once banned, the connection closes right
        after paramiko has sent that answer."""
        self.failed_attempts += 1
        banned = self.zone.is_banned(self.address)
        if banned or self.failed_attempts >= self.zone.max_auth_attempts:
            reason = "banned" if banned else "too-many-attempts"
            self.closing = True
            self.zone.refusals("connection.closed", self.address, reason, protocol="sftp")
            closer = threading.Timer(REPLY_GRACE, self.transport.close)
            closer.daemon = True
            closer.start()
        return paramiko.AUTH_FAILED

    def connection_ended(self) -> None:
        """The transport is gone: count a bare method probe, and release the ticket."""
        self.ticket.close()
        if self.partner is not None or self.counted:
            return
        transport = self.transport
        if self.probed_with is not None:
            self.zone.gatekeeper.refused(
                "sftp", self.probed_with, self.address, "asked for methods only", "none", self.ticket
            )
        elif not transport.remote_version:
            self.zone.refusals("connection.closed", self.address, "no-banner", protocol="sftp")
        else:
            self.zone.refusals("connection.closed", self.address, "not-authenticated", protocol="sftp")

    def check_channel_subsystem_request(self, channel, name):
        channel_buffer.install(channel)
        return super().check_channel_subsystem_request(channel, name)

    def check_channel_request(self, kind, chanid):
        if kind != "session" or self.partner is None:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        limit = self.zone.security.max_channels_per_connection
        if open_channels(self.transport) >= limit:
            self.zone.refusals(
                "sftp.channel_refused", self.address, "too-many-channels", partner=self.partner.name, limit=limit
            )
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        return paramiko.OPEN_SUCCEEDED

    def new_session(self) -> PartnerSession:
        return self.zone.open_session(self.partner, "sftp", self.address)


def open_channels(transport: paramiko.Transport) -> int:
    """The channels open on a connection now. paramiko has no public count: its channel map
    (`Transport._channels`) drops a channel when it closes (checked at start-up, see
    `daemon/dependency_checks.py`)."""
    return len(transport._channels)


class _ReadAheadSocket:
    """A connection's socket read in large chunks.

    paramiko's packetizer reads each SSH packet with two or three `recv` calls of the exact
    sizes it needs (first block, rest, MAC); at 32 KiB packets that is a system call and a
    round of Python per few KiB. This wrapper asks the kernel for up to READ_AHEAD bytes at a
    time and serves those exact sizes from what it got. Everything else is the socket's own.
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buffer = b""
        self._offset = 0

    def recv(self, n: int) -> bytes:
        if self._offset < len(self._buffer):
            out = self._buffer[self._offset : self._offset + n]
            self._offset += len(out)
            return out
        data = self._sock.recv(max(n, READ_AHEAD))
        if len(data) <= n:
            return data
        self._buffer, self._offset = data, n
        return data[:n]

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _ServerTransport(SshTransport):
    """paramiko's transport (with chacha20-poly1305 first), telling its connection's
    authenticator when it ends."""

    auth: _SshAuth | None = None

    def run(self):
        try:
            super().run()
        finally:
            if self.auth is not None:
                self.auth.connection_ended()


class SftpServer:
    """Controller: `start()` returns once the port listens; `stop()` is safe to call twice."""

    def __init__(self, settings, zone: DropZone):
        self.settings = settings
        self.zone = zone
        self.host_keys = load_host_keys(settings.host_keys)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self._accepting = False

    @property
    def serving(self) -> bool:
        """True while the accept loop runs."""
        return self._thread is not None and self._thread.is_alive()

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
        pause = AcceptPause("sftp")
        while self._accepting:
            try:
                connection, address = self._listener.accept()
            except OSError as exc:
                if self._accepting:
                    pause.failed(exc)
                continue
            pause.succeeded()
            try:
                self._serve(connection, address[0])
            except Exception as exc:
                log.warning("session.setup_failed", protocol="sftp", remote=address[0], error=str(exc))
                connection.close()

    def _serve(self, connection: socket.socket, remote: str) -> None:
        ticket = self.zone.admit(remote, "sftp")
        if ticket is None:
            connection.close()
            return
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = _ServerTransport(
            _ReadAheadSocket(connection),
            default_window_size=WINDOW_SIZE,
            default_max_packet_size=MAX_PACKET,
            disabled_algorithms=WEAK_ALGORITHMS,
        )
        for key in self.host_keys:
            transport.add_server_key(key)
        transport.set_subsystem_handler("sftp", _SftpSubsystem, _JailedSFTP)
        auth = _SshAuth(self.zone, remote, ticket)
        auth.transport, auth.sock = transport, connection
        transport.auth = auth
        ticket.close_hook = lambda reason: transport.close()
        with self._lock:
            self._transports = {t for t in self._transports if t.is_active()}
            self._transports.add(transport)
        transport.start_server(event=threading.Event(), server=auth)

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
