"""The engagement export: a full snapshot, one row per active subscriber of the partner.

Columns: email, opted_out (true/false), opted_out_since (UTC, ISO 8601: the first opt-out
event, else when the subscriber was last changed), open_count, click_count, last_open,
last_click, segment — aggregated from the events activity feeds imported, matched to the
subscriber by the event's contact ID being their email address (case-insensitive).
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from handlers.base import ExportKind, OptionReader
from handlers.conversations import utc_text

if TYPE_CHECKING:
    from daemon.store.repositories import Transaction

COLUMNS = ("email", "opted_out", "opted_out_since", "open_count", "click_count", "last_open", "last_click", "segment")


class EngagementExport(ExportKind):
    kind = "engagement_export"

    @staticmethod
    def read_options(reader: OptionReader) -> None:
        """No keys of its own: the columns are fixed."""
        return None

    def header(self, tx: "Transaction") -> list[str]:
        return list(COLUMNS)

    def rows(self, tx: "Transaction", after: int, upto: int | None) -> Iterator[list[Any]]:
        for s in tx.subscribers.engagement(self.partner):
            opted_out = bool(s["opted_out"])
            since = (s["opt_out_time"] or s["updated_at"]) if opted_out else None
            yield [
                s["email"], "true" if opted_out else "false", utc_text(since), s["opens"] or 0, s["clicks"] or 0,
                utc_text(s["last_open"]), utc_text(s["last_click"]), s["segment_code"] or "",
            ]  # fmt: skip
