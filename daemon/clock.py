"""The daemon's one clock: now in UTC, and the text form the store and the logs keep."""

import datetime


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def utc_stamp(moment: datetime.datetime | None = None) -> str:
    """ISO 8601 in UTC to the millisecond ("2026-11-27T06:30:00.123+00:00"): sorts as text."""
    return (moment or utc_now()).astimezone(datetime.UTC).isoformat(timespec="milliseconds")
