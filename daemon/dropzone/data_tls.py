"""TLS for FTPS data connections, by the standard library's `ssl`, with no session tickets.

A TLS 1.3 server sends NewSessionTicket messages after the handshake. A client that only
uploads never reads them, so when it closes the data connection its kernel answers with a
reset instead of a FIN, and a reset makes our kernel drop whatever the client sent that we had
not read yet: uploads arrived truncated and were published as complete (upstream
giampaolo/pyftpdlib#602, open; rclone showed it every time). The cure is to send no tickets
on data connections (`SSL_CTX_set_num_tickets(0)`), which pyOpenSSL cannot do but the
standard library can (`SSLContext.num_tickets`). So data connections speak TLS 1.2 and 1.3
through `ssl`, and pyftpdlib, written for pyOpenSSL, drives them through `DataTlsConnection`,
which answers the few calls it makes the way pyOpenSSL's `SSL.Connection` would. Tickets on
a data connection would be of no use anyway: its session is never resumed by us.
"""

import socket
import ssl

from OpenSSL import SSL

# Mozilla's "intermediate" suites for TLS 1.2 (TLS 1.3's are AEAD only): the control
# connection's list, in OpenSSL's names.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"
)


def data_tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """TLS 1.2 and 1.3, AEAD suites, our certificate, and no session tickets."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(certfile, keyfile)
    context.num_tickets = 0
    return context


class DataTlsConnection:
    """A data connection's TLS as pyOpenSSL's `SSL.Connection` would present it to pyftpdlib:
    the same methods, the same exceptions (want-read, want-write, zero-return, syscall)."""

    def __init__(self, context: ssl.SSLContext, sock: socket.socket):
        self._tls = context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=False
        )

    def set_accept_state(self) -> None:
        """We are the server already (`server_side`)."""

    def do_handshake(self) -> None:
        self._call(self._tls.do_handshake)

    def recv(self, size: int) -> bytes:
        return self._call(self._tls.recv, size)

    def send(self, data) -> int:
        return self._call(self._tls.send, data)

    sendall = send

    def get_shutdown(self) -> int:
        return 0

    def set_shutdown(self, state: int) -> None:
        """pyftpdlib marks the peer's close_notify as received so as not to wait for it; so does
        `shutdown` here."""

    def shutdown(self) -> bool:
        """Send our close_notify if we can; the peer's is not waited for, and a failure (the
        peer still sending, the connection gone) ends the shutdown as well: the connection is
        being closed either way. (pyOpenSSL's mixin ignores some errors here and then waits for
        an event that never comes: a refused upload kept its client hanging.)"""
        try:
            self._tls.unwrap()
        except (ssl.SSLError, OSError):
            pass
        return True

    def _call(self, operation, *args):
        try:
            return operation(*args)
        except (ssl.SSLError, OSError) as exc:
            raise _translated(exc) from None

    def fileno(self) -> int:
        return self._tls.fileno()

    def close(self) -> None:
        self._tls.close()

    def __getattr__(self, name):
        """Everything else (getpeername, setsockopt, ...) is the socket's own."""
        return getattr(self._tls, name)


def _translated(exc: Exception) -> Exception:
    """The pyOpenSSL exception pyftpdlib expects for what `ssl` raised."""
    if isinstance(exc, ssl.SSLWantReadError):
        return SSL.WantReadError()
    if isinstance(exc, ssl.SSLWantWriteError):
        return SSL.WantWriteError()
    if isinstance(exc, ssl.SSLZeroReturnError):
        return SSL.ZeroReturnError()
    if isinstance(exc, ssl.SSLEOFError):
        return SSL.SysCallError(-1, "Unexpected EOF")
    if isinstance(exc, ssl.SSLError):
        return SSL.Error([("SSL routines", "", exc.reason or str(exc))])
    return exc  # a plain socket error (a reset): pyftpdlib handles OSError itself
