"""What the store hands out: plain records, never a database row or a connection."""

from dataclasses import dataclass
from typing import Any

RUN_COLUMNS = (
    "id", "partner", "feed", "kind", "trigger", "file", "sha256", "rows_in_file", "rows_applied",
    "rows_rejected", "started", "finished", "status", "reason", "details", "error_file", "size", "instance",
)  # fmt: skip


class SchemaError(RuntimeError):
    """The database was written by a newer dropd, is not a dropd store, or cannot be used."""


class KeyTaken(Exception):
    """Rows written in the background were refused because one's unique key was taken (the
    statement wrote none of them)."""


class StoreUnavailable(RuntimeError):
    """The store cannot be reached now (PostgreSQL down, restarting, or out of reach): what
    was being done can be done again later; nothing of it was written."""


class NoStoreYet(SchemaError):
    """A read-only open found no store: the daemon has never started with this state_dir."""


@dataclass(frozen=True)
class RunRecord:
    id: int
    partner: str
    feed: str
    kind: str
    trigger: str
    file: str | None
    sha256: str | None
    rows_in_file: int | None
    rows_applied: int | None
    rows_rejected: int | None
    started: str
    finished: str | None
    status: str
    reason: str | None
    details: dict[str, Any]
    error_file: str | None
    size: int | None
    """The size of the run's file in bytes, when it read one."""
    instance: str | None
    """The dropd instance that ran it (`daemon.instance`)."""

    def as_dict(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in RUN_COLUMNS}


@dataclass(frozen=True)
class StoredContact:
    """The parts of a stored contact that matching and updating need."""

    key: int
    """The store's own key: what `Contacts.update` takes."""
    contact_id: str
    crm_id: str | None
    mobile_number: str | None
    source_hash: bytes | None
    custom: dict[str, Any]
    preferred_name: str | None = None
    previous_mobile_number: str | None = None
    messaging_status_sms: str | None = None
    messaging_status_web_bot: str | None = None


@dataclass(frozen=True)
class StoredSubscriber:
    key: int
    email_key: str
    first_name: str | None
    last_name: str | None
    segment_code: str | None
    removed: bool


@dataclass(frozen=True)
class OutgoingMail:
    """One message to one recipient in the outbox."""

    id: int
    kind: str
    """recap | alert | digest"""
    message_id: str
    run_id: int | None
    recipient: str
    subject: str
    message: bytes
    status: str
    """pending | sent | failed"""
    attempts: int
    next_attempt: str
    last_error: str | None
    created: str
    sent_at: str | None


@dataclass(frozen=True)
class WebSession:
    """A web console session, as the store keeps it."""

    staff: str
    csrf: str
    credential: str
    """Which password hash the session was opened with (a digest of it)."""
    created: str
    expires: str
