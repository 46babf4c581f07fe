"""The private parts of our dependencies that dropd relies on, checked at start.

dropd fixes a few things in paramiko, pyftpdlib, phonenumbers and uvicorn from the outside (each is
named where it is done, with its reason and, where there is one, the upstream issue). Those
fixes lean on names the libraries do not promise to keep. `setup.cfg` pins each library to a
compatible release (`~=`), and `unmet()` looks at every such name at start: a library that
changed under a fix stops the daemon with a sentence naming the library, its version and what
is missing, rather than letting the fix fail silently under partners' transfers.
"""

import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class Private:
    package: str
    """The distribution (its version is named in the error)."""
    where: str
    """`module:Qualified.name` of the thing relied on."""
    parameters: tuple[str, ...] | None = None
    """For a callable: its parameter names, in order (`self` included for a method)."""
    sets: tuple[str, ...] = ()
    """Names the callable must assign or use (an `__init__` that sets instance attributes)."""
    why: str = ""

    def problem(self) -> str | None:
        module_name, _, qualified = self.where.partition(":")
        try:
            target = importlib.import_module(module_name)
            for part in qualified.split(".") if qualified else ():
                target = getattr(target, part)
        except (ImportError, AttributeError):
            return f"{self.where} is gone"
        if self.parameters is not None:
            try:
                found = tuple(inspect.signature(target).parameters)
            except (TypeError, ValueError):
                return f"{self.where} is no longer a function"
            if found != self.parameters:
                return f"{self.where} now takes ({', '.join(found)}), not ({', '.join(self.parameters)})"
        missing = [name for name in self.sets if name not in getattr(getattr(target, "__code__", None), "co_names", ())]
        if missing:
            return f"{self.where} no longer sets {', '.join(missing)}"
        return None


PRIVATES = (
    # paramiko: the SFTP server's packet handling, replies and handle tables (sftp_server.py).
    Private("paramiko", "paramiko.sftp_server:SFTPServer._read_packet", ("self",), why="packets read without copies"),
    Private("paramiko", "paramiko.sftp_server:SFTPServer._send_packet", ("self", "t", "packet")),
    Private(
        "paramiko",
        "paramiko.sftp_server:SFTPServer._send_status",
        ("self", "request_number", "code", "desc"),
        why="failure statuses carry their sentence",
    ),  # fmt: skip
    Private(
        "paramiko",
        "paramiko.sftp_server:SFTPServer._process",
        ("self", "t", "request_number", "msg"),
        why="CLOSE answers the handle's own status; limits@openssh.com; check-file; handle caps",
    ),  # fmt: skip
    Private("paramiko", "paramiko.sftp_server:SFTPServer._send_server_version", ("self",), why="extensions offered"),
    Private("paramiko", "paramiko.sftp:BaseSFTP._write_all", ("self", "out"), why="replies written without re-slicing"),
    Private("paramiko", "paramiko.sftp:BaseSFTP._read_all", ("self", "n")),
    Private("paramiko", "paramiko.sftp_server:SFTPServer.__init__", sets=("file_table", "folder_table")),
    Private(
        "paramiko",
        "paramiko.transport:Transport.__init__",
        sets=("_channels",),
        why="open channels counted per connection",
    ),  # fmt: skip
    Private(
        "paramiko",
        "paramiko.channel:Channel.__init__",
        sets=("in_buffer", "lock", "remote_chanid", "closed"),
        why="the receive buffer swapped (paramiko issue #1660)",
    ),  # fmt: skip
    Private("paramiko", "paramiko.buffered_pipe:BufferedPipe.__init__", sets=("_event", "_closed")),
    # paramiko: SFTP replies sent from parts, one channel packet at a time (channel_data.py).
    Private(
        "paramiko",
        "paramiko.channel:Channel._wait_for_send_window",
        ("self", "size"),
        why="downloads sent without joining each reply",
    ),  # fmt: skip
    Private("paramiko", "paramiko.transport:Transport._send_user_message", ("self", "data")),
    # paramiko: chacha20-poly1305@openssh.com's packet path and packets sealed from parts, on the
    # packetizer's own state (packetizer.py; paramiko has the AEAD ciphers of issue #982 but
    # not this one).
    Private(
        "paramiko",
        "paramiko.packet:Packetizer.__init__",
        sets=tuple(
            f"_Packetizer__{name}"
            for name in (
                "block_engine_out",
                "block_engine_in",
                "compress_engine_out",
                "compress_engine_in",
                "write_lock",
                "sequence_number_out",
                "sequence_number_in",
                "sent_bytes",
                "sent_packets",
                "received_bytes",
                "received_packets",
                "received_bytes_overflow",
                "received_packets_overflow",
                "need_rekey",
                "sdctr_out",
                "etm_out",
                "block_size_out",
                "mac_size_out",
                "mac_key_out",
                "mac_engine_out",
            )
        ),
        why="chacha20-poly1305@openssh.com; downloads sealed without copies",
    ),  # fmt: skip
    Private("paramiko", "paramiko.packet:Packetizer.read_all", ("self", "n", "check_rekey")),
    Private("paramiko", "paramiko.packet:Packetizer.write_all", ("self", "out")),
    Private("paramiko", "paramiko.packet:Packetizer._trigger_rekey", ("self",)),
    Private(
        "paramiko",
        "paramiko.transport:Transport.__init__",
        (
            "self",
            "sock",
            "default_window_size",
            "default_max_packet_size",
            "disabled_algorithms",
            "server_sig_algs",
            "strict_kex",
            "packetizer_class",
        ),
        why="our packetizer class",
    ),  # fmt: skip
    Private("paramiko", "paramiko.sftp_attr:SFTPAttributes.__init__", sets=("_flags",)),
    # pyftpdlib: how connections end, TLS data connections, error replies (ftp_server.py).
    Private(
        "pyftpdlib",
        "pyftpdlib.servers:ThreadedFTPServer._loop",
        ("self", "handler"),
        why="every connection gives its admission slot back",
    ),  # fmt: skip
    Private("pyftpdlib", "pyftpdlib.handlers.ftp.control:strerror", ("err",), why="replies keep our sentence"),
    Private("pyftpdlib", "pyftpdlib.handlers.ftps.ssl:SSLConnectionMixin._handle_ssl_want_rw", ("self",)),
    Private("pyftpdlib", "pyftpdlib.handlers.ftps.ssl:SSLConnectionMixin._do_ssl_handshake", ("self",)),
    Private(
        "pyftpdlib",
        "pyftpdlib.handlers.ftps.ssl:SSLConnectionMixin.secure_connection",
        ("self", "ssl_context"),
        why="data connections without session tickets (pyftpdlib issue #602)",
    ),  # fmt: skip
    Private("pyftpdlib", "pyftpdlib.handlers.ftps.ssl:SSLConnectionMixin.__init__", sets=("_ssl_want_read",)),
    Private("pyftpdlib", "pyftpdlib.exceptions:_FileReadWriteError"),
    Private("pyftpdlib", "pyftpdlib.exceptions:_RetryError"),
    Private("pyftpdlib", "pyftpdlib.handlers.ftp.data:DTPHandler.__init__", sets=("transfer_finished", "receive")),
    # phonenumbers: the metadata the fast path for North American numbers reads (validation.py).
    Private(
        "phonenumbers",
        "phonenumbers.phonemetadata:PhoneMetadata.metadata_for_region",
        ("region_code", "default"),
        why="North American numbers validated by the library's own patterns",
    ),  # fmt: skip
    Private("phonenumbers", "phonenumbers.phonenumberutil:COUNTRY_CODE_TO_REGION_CODE"),
    # uvicorn: the console's deadline per request and cap on connections (web/server.py).
    Private(
        "uvicorn",
        "uvicorn.protocols.http.h11_impl:H11Protocol.__init__",
        sets=("connections", "cycle", "loop", "transport"),
        why="a connection that never finishes its request is closed",
    ),  # fmt: skip
    Private("uvicorn", "uvicorn.protocols.http.h11_impl:H11Protocol.connection_made", ("self", "transport")),
    Private("uvicorn", "uvicorn.protocols.http.h11_impl:H11Protocol.connection_lost", ("self", "exc")),
    Private("uvicorn", "uvicorn.protocols.http.h11_impl:H11Protocol.on_response_complete", ("self",)),
    Private(
        "uvicorn",
        "uvicorn.protocols.http.h11_impl:RequestResponseCycle.__init__",
        sets=("more_body", "response_complete"),
    ),
)


def unmet() -> list[str]:
    """One sentence for each private that is not as dropd expects; [] when all are."""
    problems = []
    for private in PRIVATES:
        problem = private.problem()
        if problem is not None:
            version = importlib.metadata.version(private.package)
            reason = f" (dropd relies on it: {private.why})" if private.why else ""
            problems.append(
                f"{private.package} {version}: {problem}{reason}; install {_pinned(private.package)} "
                f"(what this dropd is made for) or a dropd that supports {private.package} {version}"
            )
    return problems


def _pinned(package: str) -> str:
    """The requirement dropd declares for `package` ("paramiko~=5.1"), from its metadata."""
    try:
        requirements = importlib.metadata.requires("dropd") or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        name = requirement.split(";")[0].strip()
        if name.lower().startswith(package.lower()) and name[len(package) :][:1] in ("~", "=", ">", "<", "!"):
            return name
    return package
