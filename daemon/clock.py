"""The daemon's one clock: now in UTC, and the text form the store and the logs keep."""

import datetime
import zoneinfo


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def utc_stamp(moment: datetime.datetime | None = None) -> str:
    """ISO 8601 in UTC to the millisecond ("2026-11-27T06:30:00.123+00:00"): sorts as text."""
    return (moment or utc_now()).astimezone(datetime.UTC).isoformat(timespec="milliseconds")


def local_moment(text: str, zone: zoneinfo.ZoneInfo, day_end: bool = False) -> str:
    """An ISO date ("2026-11-27") or date and time ("2026-11-27T06:00") in `zone`, as a UTC
    stamp; a date means its start, or with `day_end` the start of the next day (the end of an
    inclusive range). ValueError when it is neither."""
    if len(text) == 10:
        moment = datetime.datetime.combine(datetime.date.fromisoformat(text), datetime.time(), zone)
        return utc_stamp(moment + datetime.timedelta(days=1) if day_end else moment)
    moment = datetime.datetime.fromisoformat(text)
    return utc_stamp(moment if moment.tzinfo else moment.replace(tzinfo=zone))


def local_text(stamp: str | None, timezone: str) -> str:
    """A UTC stamp from the store as a person reads it in `timezone`: "2026-11-27 03:05:12 EST"
    ("-" for none)."""
    if not stamp:
        return "-"
    moment = datetime.datetime.fromisoformat(stamp).astimezone(zoneinfo.ZoneInfo(timezone))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")
