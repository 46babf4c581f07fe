"""Typed cell values for the activity and messages imports: string, boolean, date."""

import datetime
import zoneinfo

TYPES = ("string", "boolean", "date")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def parse_boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false, 1/0, yes/no)")


def parse_date(text: str, timezone: str) -> datetime.datetime:
    """ISO 8601 date or date-time, with or without a zone (naive means `timezone`); returned in UTC."""
    value = text.strip()
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date or date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return parsed.astimezone(datetime.UTC)


def parse_typed(text: str, kind: str, timezone: str):
    if kind == "boolean":
        return parse_boolean(text)
    if kind == "date":
        return parse_date(text, timezone).isoformat()
    return text
