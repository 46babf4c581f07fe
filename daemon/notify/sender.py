"""Delivering the outbox: a thread that sends what is due, and retries what could not be sent.

Messages are put in the store's outbox in the same transaction as what they report (a run's
record), one row per recipient, so nothing is lost when the SMTP server is down or the daemon
restarts, and a run never waits for mail. The sender takes the due rows, sends them over one
connection, and records each outcome: sent; a temporary failure (4xx, refused connection,
timeout, TLS or login trouble) tried again after `retry`, doubling up to an hour; or a
permanent 5xx refusal, kept as `failed` (`dropd mail --pending` lists it, `--retry ID` sends
it again). A row is marked sent only after the server accepted it; if the daemon dies in
between, the copy sent again carries the same Message-ID.
"""

import threading
from collections.abc import Callable

import structlog

from daemon.clock import utc_now
from daemon.notify import smtp
from daemon.notify.smtp import DeliveryError, SmtpServer

log = structlog.get_logger("dropd.mail")

BATCH = 50
MAX_DELAY = 3600.0
HOLD = 600.0
"""Messages taken for a pass are this sender's this long (several instances share an outbox);
a pass marks each sent or due again well before."""


class MailSender:
    def __init__(
        self, store, server: Callable[[], SmtpServer | None], envelope_sender: Callable[[], str],
        retry: Callable[[], float], check_every: float = 5.0,
    ):  # fmt: skip
        """`server`, `envelope_sender` and `retry` are read on every pass, so a reload applies."""
        self.store = store
        self._server = server
        self._envelope_sender = envelope_sender
        self._retry = retry
        self._check_every = check_every
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mail-sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something was queued: look now rather than at the next check."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:
                log.exception("mail.pass_failed")
            self._wake.wait(self._check_every)
            self._wake.clear()

    def deliver_due(self) -> int:
        """One pass over the due messages; returns how many were sent."""
        server = self._server()
        if server is None:
            return 0
        with self.store.transaction(label="mail") as tx:
            due = tx.outbox.take_due(utc_now(), BATCH, HOLD)
        if not due:
            return 0
        try:
            client = smtp.connect(server)
        except DeliveryError as error:
            for item in due:
                self._record_failure(item, error)
            return 0
        sent = 0
        waiting = list(due)
        try:
            while waiting and not self._stop.is_set():
                item = waiting.pop(0)
                try:
                    smtp.send(client, item.message, self._envelope_sender(), item.recipient)
                except DeliveryError as error:
                    self._record_failure(item, error)
                    if error.step == "data" and not error.permanent:
                        break  # the connection is gone: the rest wait for the next pass
                    continue
                with self.store.transaction(label="mail") as tx:
                    tx.outbox.sent(item.id)
                sent += 1
                log.info(
                    "mail.sent",
                    id=item.id,
                    kind=item.kind,
                    run_id=item.run_id,
                    to=item.recipient,
                    message_id=item.message_id,
                )
        finally:
            smtp.close(client)
            if waiting:  # not tried in this pass: due again at once, not after the hold
                with self.store.transaction(label="mail") as tx:
                    tx.outbox.release([item.id for item in waiting])
        return sent

    def _record_failure(self, item, error: DeliveryError) -> None:
        context = dict(
            id=item.id, kind=item.kind, run_id=item.run_id, to=item.recipient, step=error.step, error=error.message
        )
        with self.store.transaction(label="mail") as tx:
            if error.permanent:
                tx.outbox.failed(item.id, str(error))
                log.error("mail.failed", **context, message="kept as failed; `dropd mail --retry ID` sends it again")
                return
            delay = min(self._retry() * 2**item.attempts, MAX_DELAY)
            tx.outbox.retry_later(item.id, str(error), delay)
        log.warning("mail.retry", **context, attempts=item.attempts + 1, seconds=round(delay))
