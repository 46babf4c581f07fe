"""The daily windows feeds run in, in the daemon's time zone: one table for imports and exports.

Import windows (two hours each) are named; export blocks are the eight 3-hour blocks of the
day, named by their hours ("00-03" ... "21-24"). A window is open from its start hour up to,
not including, its end hour, local time. An import feed runs as its window opens; an export
feed runs at its own moment inside the block (`start_offset`, fixed by the feed's name and
spread over all but the block's last hour), so that many feeds do not all push at the
block's first second.
"""

import datetime
import hashlib
import zoneinfo
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    name: str
    start: int
    end: int
    direction: str
    """"import" or "export": which feeds may list it in `schedule`."""


WINDOWS = {
    window.name: window
    for window in (
        Window("overnight", 3, 5, "import"),
        Window("morning", 10, 12, "import"),
        Window("afternoon", 14, 16, "import"),
        Window("evening", 18, 20, "import"),
        *(Window(f"{hour:02d}-{hour + 3:02d}", hour, hour + 3, "export") for hour in range(0, 24, 3)),
    )
}
ON_ARRIVAL = "on_arrival"


def window_names(direction: str) -> tuple[str, ...]:
    return tuple(name for name, window in WINDOWS.items() if window.direction == direction)


def open_window(now: datetime.datetime, timezone: str, name: str) -> str | None:
    """The claim key ("2026-11-23/overnight") when window `name` is open at `now`, else None."""
    local = now.astimezone(zoneinfo.ZoneInfo(timezone))
    window = WINDOWS[name]
    return f"{local.date().isoformat()}/{name}" if window.start <= local.hour < window.end else None


RETRY_ROOM = 3600.0
"""An export feed's moment falls in its block's first part; the last hour is left for retries."""


def _bounds(now: datetime.datetime, timezone: str, name: str) -> tuple[datetime.datetime, datetime.datetime]:
    """The instants (UTC) the window `name` of `now`'s local day opens and closes. Wall-clock
    arithmetic: on a DST day a block is an hour shorter or longer, never skipped or doubled."""
    zone = zoneinfo.ZoneInfo(timezone)
    midnight = datetime.datetime.combine(now.astimezone(zone).date(), datetime.time(), tzinfo=zone)
    window = WINDOWS[name]
    opens = midnight + datetime.timedelta(hours=window.start)
    closes = midnight + datetime.timedelta(hours=window.end)
    return opens.astimezone(datetime.UTC), closes.astimezone(datetime.UTC)


def start_offset(feed: str, name: str, length: float) -> float:
    """Seconds after the window opens at which `feed` runs in it: 0 for import windows; for
    export blocks a moment fixed by the feed's name, within the block's `length` less an hour."""
    if WINDOWS[name].direction != "export":
        return 0.0
    fraction = int.from_bytes(hashlib.sha256(feed.encode()).digest()[:4], "big") / 2**32
    return fraction * max(length - RETRY_ROOM, 0.0)


def due_window(now: datetime.datetime, timezone: str, name: str, feed: str) -> str | None:
    """The claim key when window `name` is open at `now` and `feed`'s moment in it has come."""
    key = open_window(now, timezone, name)
    if key is None:
        return None
    opens, closes = _bounds(now, timezone, name)
    elapsed = (now - opens).total_seconds()
    return key if elapsed >= start_offset(feed, name, (closes - opens).total_seconds()) else None


def window_end(now: datetime.datetime, timezone: str, name: str) -> datetime.datetime:
    """When the window `name` that is open at `now` closes (in UTC)."""
    return _bounds(now, timezone, name)[1]


def next_run(now: datetime.datetime, timezone: str, name: str, feed: str) -> datetime.datetime:
    """The next instant (UTC) after `now` at which `feed` runs in window `name`."""
    zone = zoneinfo.ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    for days in range(3):
        noon = datetime.datetime.combine(today + datetime.timedelta(days=days), datetime.time(12), tzinfo=zone)
        opens, closes = _bounds(noon, timezone, name)
        moment = opens + datetime.timedelta(seconds=start_offset(feed, name, (closes - opens).total_seconds()))
        if moment > now:
            return moment
    raise AssertionError("a daily window opens within three days")
