"""Typed cell values: the activity and messages imports' (string, boolean, date) and contacts'
custom fields' (string, number, integer, boolean, date)."""

import datetime
import operator
import re
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


# What most exports write: a UTC time to the second.
_UTC_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def date_text(text: str, timezone: str) -> str:
    """`parse_date(text, timezone).isoformat()`: for a UTC time to the second that is the text
    itself with +00:00 for its Z, once the fields are known to make a date (tested equal in
    tests/handlers/test_typed_values.py)."""
    value = text.strip()
    if _UTC_SECONDS.fullmatch(value):
        try:
            datetime.datetime.fromisoformat(value[:-1])
        except ValueError:
            pass  # parse_date says why
        else:
            return value[:-1] + "+00:00"
    return parse_date(text, timezone).isoformat()


# A column of UTC times to the second, each followed by a line end; the day is checked apart.
_UTC_COLUMN = re.compile(
    r"(?:[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z\n)*"
)


_DAY = operator.itemgetter(slice(0, 10))


def utc_column(cells: list[str]) -> list[str] | None:
    """`date_text` of every cell (stripped already) when each is a UTC time to the second on a
    real day, worked out for the whole column at once; None when one is not (tested equal in
    tests/handlers/test_typed_values.py)."""
    joined = "\n".join(cells) + "\n" if cells else ""
    if not _UTC_COLUMN.fullmatch(joined):
        return None
    for day in set(map(_DAY, cells)):
        try:
            datetime.date.fromisoformat(day)
        except ValueError:
            return None
    return joined.replace("Z\n", "+00:00\n").split("\n")[:-1]


_BOOLEANS = dict.fromkeys(_TRUE, True) | dict.fromkeys(_FALSE, False)


def boolean_column(cells: list[str]) -> list[bool] | None:
    """`parse_boolean` of every cell (stripped already), or None when one is not a boolean."""
    values = list(map(_BOOLEANS.get, map(str.lower, cells)))
    return None if None in values else [bool(value) for value in values]


CUSTOM_TYPES = ("string", "number", "integer", "boolean", "date")


def custom_value(text: str, kind: str) -> object:
    """A custom field's cell as stored, by its `type`: a string as it came; a number as an
    int when whole, else a float; an integer; true/false; a date as YYYY-MM-DD. ValueError
    says what was expected."""
    if kind == "string":
        return text
    value = text.strip()
    if kind == "boolean":
        return parse_boolean(value)
    if kind == "date":
        try:
            return datetime.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    if kind == "integer":
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    try:
        number = (
            float(value.replace(",", ""))
            if re.fullmatch(r"[+-]?[0-9][0-9,]*(\.[0-9]*)?|[+-]?\.[0-9]+", value)
            else None
        )
    except ValueError:
        number = None
    if number is None:
        raise ValueError(f"{value!r} is not a number")
    return int(number) if number.is_integer() and abs(number) < 2**53 else number
