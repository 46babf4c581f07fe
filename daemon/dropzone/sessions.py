"""A logged-in partner session: the protocol-independent half of both servers.

The SFTP and FTP layers translate their protocol into calls on `PartnerSession`; the jail,
atomic uploads, the finished-upload hand-off and the per-transfer and per-session summary
log lines all happen here, once.
"""

import errno
import os
import threading
import time
from pathlib import Path

import structlog

from daemon.config.partners import Partner
from daemon.dropzone.handoff import FinishedUpload, UploadHandoff
from daemon.dropzone.jail import Jail
from daemon.dropzone.quota import Quotas
from daemon.dropzone.uploads import AtomicUpload, TransferCounter
from daemon.temp_names import is_our_temp_name, is_temporary_name

log = structlog.get_logger("dropd.session")


class PartnerSession:
    def __init__(
        self,
        partner: Partner,
        home: Path,
        protocol: str,
        remote: str,
        handoff: UploadHandoff,
        transfers: TransferCounter,
        feed_folders: dict[Path, str] | None = None,
        quotas: Quotas | None = None,
    ):
        self.partner = partner
        self.jail = Jail(home)
        self._feed_folders = feed_folders or {}
        self._quotas = quotas
        """The folders the partner's feeds use (real path: feed name); see `_keep_feed_folders`."""
        self.protocol = protocol
        self.remote = remote
        self._handoff = handoff
        self._transfers = transfers
        self._open_uploads: set[AtomicUpload] = set()
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.uploads = self.downloads = self.bytes_in = self.bytes_out = self.aborted = 0
        self.closed = False

    def _context(self) -> dict:
        return {"partner": self.partner.name, "protocol": self.protocol, "remote": self.remote}

    def resolve(self, path: str) -> Path:
        return self.jail.resolve(path)

    def visible(self, name: str) -> bool:
        """Our own temporary names are never listed to the partner."""
        return not is_our_temp_name(name)

    def existing(self, path: str) -> Path:
        """A file or folder the partner can see; never the home itself."""
        real = self.jail.resolve(path)
        if real == self.jail.home:
            raise PermissionError(errno.EACCES, "the home folder itself cannot be changed", path)
        if not self.visible(real.name) or not os.path.lexists(real):
            raise FileNotFoundError(errno.ENOENT, "no such file or folder", path)
        return real

    def _new_name(self, path: str) -> Path:
        """A name the partner may create: inside the home, not the home, not a reserved name."""
        real = self.jail.resolve(path)
        if real == self.jail.home:
            raise PermissionError(errno.EACCES, "the home folder itself cannot be changed", path)
        if is_our_temp_name(real.name):
            raise PermissionError(errno.EACCES, "names like this are reserved by the server", real.name)
        return real

    # Folder and file actions: both protocols come here, so the rules cannot drift apart.

    def make_folder(self, path: str) -> None:
        os.mkdir(self._new_name(path), 0o750)

    def remove_folder(self, path: str) -> None:
        real = self.existing(path)
        self._keep_feed_folders(real, path)
        os.rmdir(real)

    def _keep_feed_folders(self, real: Path, path: str) -> None:
        """A folder a feed uses (its landing folder, archive, failed/, outbox), or one holding
        such a folder, is not the partner's to rename or remove: the feed would see nothing."""
        for folder, feed in self._feed_folders.items():
            if folder == real:
                shown = self.jail.to_virtual(real)
                raise PermissionError(
                    errno.EACCES, f"{shown} is used by the feed {feed}; it cannot be renamed or removed", path
                )
            if real in folder.parents:
                shown, inner = self.jail.to_virtual(real), self.jail.to_virtual(folder)
                raise PermissionError(
                    errno.EACCES,
                    f"{shown} holds {inner}, which is used by the feed {feed}; it cannot be renamed or removed",
                    path,
                )

    def remove_file(self, path: str) -> None:
        real = self.existing(path)
        if real.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", path)
        os.unlink(real)

    def rename(self, old: str, new: str, replace: bool = False) -> None:
        """Rename (`replace`: over an existing file, as posix-rename and FTP do)."""
        source, target = self.existing(old), self._new_name(new)
        self._keep_feed_folders(source, old)
        self._keep_feed_folders(target, new)
        if not replace and os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "the target exists", new)
        os.replace(source, target)
        self.renamed(source, target)

    def change_mode(self, path: str, mode: int) -> None:
        """Owner bits are always kept and nothing is ever opened to other users."""
        real = self.existing(path)
        os.chmod(real, (mode & 0o770) | (0o700 if real.is_dir() else 0o600))

    def set_times(self, path: str, accessed: float, modified: float) -> None:
        os.utime(self.existing(path), (accessed, modified))

    def open_download(self, path: str) -> "Download":
        real = self.existing(path)
        if real.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", path)
        return Download(self, real)

    def begin_upload(self, path: str, append: bool = False) -> AtomicUpload:
        real = self._new_name(path)
        if real.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", path)
        self._keep_feed_folders(real, path)
        guard = (lambda upload, size: self._quotas.check(self.partner, upload, size)) if self._quotas else None
        upload = AtomicUpload(real, self._transfers, append=append, guard=guard)
        with self._lock:
            self._open_uploads.add(upload)
        return upload

    def finish_upload(self, upload: AtomicUpload) -> None:
        """The client closed the upload: publish it and hand it off.

        Raises OSError when the upload cannot be published (a write failed or came up short,
        or the final flush failed); then nothing is published and the protocol tells the
        client.
        """
        with self._lock:
            self._open_uploads.discard(upload)
        duration = upload.duration
        try:
            size = upload.commit()
        except OSError as exc:
            self._quota_done(upload, published=False)
            self.aborted += 1
            reason = f"not stored: {exc.strerror or exc}"
            self._log_transfer("upload", self.jail.to_virtual(upload.final_path), 0, duration, "failed", reason)
            raise
        self._quota_done(upload, published=True)
        self.uploads += 1
        self.bytes_in += size
        virtual = self.jail.to_virtual(upload.final_path)
        self._log_transfer("upload", virtual, size, duration, "completed")
        if not is_temporary_name(upload.final_path.name):
            self._hand_off(virtual, upload.final_path, size, duration)

    def abort_upload(self, upload: AtomicUpload, reason: str) -> None:
        with self._lock:
            self._open_uploads.discard(upload)
        if upload.finished:
            return
        upload.discard()
        self._quota_done(upload, published=False)
        self.aborted += 1
        self._log_transfer("upload", self.jail.to_virtual(upload.final_path), 0, upload.duration, "aborted", reason)

    def _quota_done(self, upload: AtomicUpload, published: bool) -> None:
        if self._quotas is not None:
            self._quotas.finished(self.partner.name, upload, published)

    def renamed(self, source: Path, target: Path) -> None:
        """A client's temp-name upload renamed to its final name is a finished upload too."""
        if is_temporary_name(source.name) and not is_temporary_name(target.name) and target.is_file():
            self._hand_off(self.jail.to_virtual(target), target, target.stat().st_size, 0.0)

    def download_finished(self, path: Path, size: int, duration: float, completed: bool) -> None:
        self.downloads += 1
        self.bytes_out += size
        self._log_transfer(
            "download", self.jail.to_virtual(path), size, duration, "completed" if completed else "aborted"
        )

    def _hand_off(self, virtual: str, real: Path, size: int, duration: float) -> None:
        self._handoff.finished(FinishedUpload(self.partner.name, self.protocol, virtual, real, size, duration))

    def _log_transfer(self, direction, path, size, duration, status, reason=None) -> None:
        fields = dict(direction=direction, path=path, size=size, duration=round(duration, 3), status=status)
        if reason:
            fields["reason"] = reason
        log.info("transfer.finished", **self._context(), **fields)

    def close(self, reason: str = "disconnected") -> None:
        """End the session: any upload still open is dropped, and one summary line is logged."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            leftovers = list(self._open_uploads)
        for upload in leftovers:
            self.abort_upload(upload, reason)
        log.info(
            "session.closed",
            **self._context(),
            duration=round(time.monotonic() - self.started, 3),
            uploads=self.uploads,
            downloads=self.downloads,
            aborted=self.aborted,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
        )


class Download:
    """A file being sent: an open descriptor, counted as an open transfer until `finish`."""

    def __init__(self, session: PartnerSession, path: Path):
        self.session = session
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.started = time.monotonic()
        self.finished = False
        session._transfers.opened()

    def finish(self, sent: int, completed: bool) -> None:
        if self.finished:
            return
        self.finished = True
        os.close(self.fd)
        self.session._transfers.closed()
        self.session.download_finished(self.path, sent, time.monotonic() - self.started, completed)
