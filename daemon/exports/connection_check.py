"""`dropd test-connection FEED`: each step of reaching an export feed's destination, in order.

For a partner's server: the name resolves (dns), the port answers (tcp), the server is who we
pinned (host-key, sftp) or its certificate verifies (tls, ftps), the login is accepted (auth),
the directory exists (directory) and takes a file (permission: a probe written and removed).
For the partner's own folder in the drop zone: that it exists or can be made, and is writable.
"""

from daemon.exports.destinations import FtpsPush, OutboxFolder, SftpPush
from daemon.exports.errors import PushError
from daemon.temp_names import our_temp_name


def steps_of(destination) -> list[str]:
    if isinstance(destination, SftpPush):
        return ["dns", "tcp", "host-key", "auth", "directory", "permission"]
    if isinstance(destination, FtpsPush):
        return ["dns", "tcp", "tls", "auth", "directory", "permission"]
    return ["directory", "permission"]


def check(destination) -> PushError | None:
    """None when every step passed, else the first failure."""
    try:
        if isinstance(destination, (SftpPush, FtpsPush)):
            with destination.open() as session:
                session.check_directory()
        else:
            _check_folder(destination)
    except PushError as error:
        return error
    return None


def _check_folder(destination: OutboxFolder) -> None:
    try:
        destination.folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise PushError("directory", f"cannot create {destination.folder}: {exc.strerror}") from None
    probe = destination.folder / our_temp_name()
    try:
        probe.write_bytes(b"dropd test-connection\n")
        probe.unlink()
    except OSError as exc:
        raise PushError("permission", f"cannot write in {destination.folder}: {exc.strerror}") from None
