"""Sending one message through the `[smtp]` server, with Python's own smtplib.

Every failure is a `DeliveryError` that says which step failed — looking up the host (dns),
connecting (tcp), TLS, logging in (auth), the server refusing the sender or the recipient,
or the message itself — and whether trying again later can help: a 5xx answer to the
sender, recipient or message is permanent, everything else (4xx, refused connections,
timeouts, TLS and login problems an admin can fix) is worth another try.
"""

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP


class DeliveryError(Exception):
    def __init__(self, step: str, message: str, permanent: bool = False):
        self.step = step
        self.message = message
        self.permanent = permanent
        super().__init__(f"{step}: {message}")


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to connect: from `[smtp]`, with the password read from its file."""

    host: str
    port: int
    security: str
    """starttls | ssl | none"""
    username: str
    password: str | None
    timeout: float
    ca_file: str | None
    """A CA bundle to verify the server with; the system's store when None."""


def _tls_context(server: SmtpServer) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=server.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _response_error(step: str, code: int, text) -> DeliveryError:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return DeliveryError(step, f"the server answered {code} {text}".strip(), permanent=500 <= code < 600)


def connect(server: SmtpServer) -> smtplib.SMTP:
    """An open, secured and logged-in connection, or a DeliveryError naming the step."""
    try:
        socket.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeliveryError("dns", f"cannot resolve {server.host}: {exc.strerror}") from None
    where = f"{server.host}:{server.port}"
    try:
        if server.security == "ssl":
            client = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout, context=_tls_context(server))
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
    except ssl.SSLError as exc:
        raise DeliveryError("tls", f"TLS with {where} failed: {exc.reason or exc}") from None
    except smtplib.SMTPConnectError as exc:
        raise _response_error("tcp", exc.smtp_code, exc.smtp_error) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError("tcp", f"cannot connect to {where}: {_describe(exc)}") from None
    try:
        if server.security == "starttls":
            try:
                client.starttls(context=_tls_context(server))
            except smtplib.SMTPNotSupportedError:
                raise DeliveryError("tls", f'{where} does not offer STARTTLS (security = "starttls")') from None
            except ssl.SSLError as exc:
                raise DeliveryError("tls", f"TLS with {where} failed: {exc.reason or exc}") from None
        if server.username:
            _login(client, server, where)
    except DeliveryError:
        _quietly_close(client)
        raise
    except (OSError, smtplib.SMTPException) as exc:
        _quietly_close(client)
        raise DeliveryError("tcp", f"the connection to {where} failed: {_describe(exc)}") from None
    return client


def _login(client: smtplib.SMTP, server: SmtpServer, where: str) -> None:
    """AUTH with one mechanism: PLAIN, else LOGIN (the connection is TLS unless security = "none",
    which the config refuses together with a username). One refusal is the answer: smtplib's
    login() would go on to the next mechanism, and some servers then wait instead of refusing."""
    try:
        client.ehlo_or_helo_if_needed()
        offered = client.esmtp_features.get("auth", "").upper().split()
        mechanism = next((name for name in ("PLAIN", "LOGIN") if name in offered), None)
        if mechanism is None:
            raise DeliveryError(
                "auth", f"{where} offers no AUTH PLAIN or LOGIN (it offers: {' '.join(offered) or 'none'})"
            )
        client.user, client.password = server.username, server.password or ""
        client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"), initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError("auth", f"login as {server.username!r} refused: {exc.smtp_code}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError("auth", f"login as {server.username!r} failed: {_describe(exc)}") from None


def send(client: smtplib.SMTP, message: EmailMessage | bytes, sender: str, recipient: str) -> None:
    """Deliver `message` (bytes with CRLF line ends, as `as_bytes(policy=SMTP)` makes them) to one recipient."""
    try:
        data = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP)
        client.sendmail(sender, [recipient], data)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = exc.recipients[recipient]
        raise _response_error("recipient", code, text) from None
    except smtplib.SMTPSenderRefused as exc:
        raise _response_error("sender", exc.smtp_code, exc.smtp_error) from None
    except smtplib.SMTPDataError as exc:
        raise _response_error("data", exc.smtp_code, exc.smtp_error) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError("data", f"the connection failed while sending: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _quietly_close(client: smtplib.SMTP) -> None:
    try:
        client.close()
    except OSError:
        pass


def close(client: smtplib.SMTP) -> None:
    """QUIT, and close whatever the server does."""
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        _quietly_close(client)
