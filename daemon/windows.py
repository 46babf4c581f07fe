"""The daily windows feeds run in, in the daemon's time zone: one table for imports and exports.

Import windows (two hours each) are named; export blocks are the eight 3-hour blocks of the
day, named by their hours ("00-03" ... "21-24"). A window is open from its start hour up to,
not including, its end hour, local time. An import feed runs as its window opens; an export
feed runs at its own moment inside the block (`start_offset`, the same every day, spread
over the block's first two hours by the feed's name), so that many feeds do not all push at
the block's first second.
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


EXPORT_SPREAD = 2 * 3600


def start_offset(feed: str, name: str) -> float:
    """Seconds after the window's start at which `feed` runs in it: 0 for import windows."""
    if WINDOWS[name].direction != "export":
        return 0.0
    return float(int.from_bytes(hashlib.sha256(feed.encode()).digest()[:4], "big") % EXPORT_SPREAD)


def due_window(now: datetime.datetime, timezone: str, name: str, feed: str) -> str | None:
    """The claim key when window `name` is open at `now` and `feed`'s moment in it has come."""
    local = now.astimezone(zoneinfo.ZoneInfo(timezone))
    window = WINDOWS[name]
    if not window.start <= local.hour < window.end:
        return None
    elapsed = (local.hour - window.start) * 3600 + local.minute * 60 + local.second
    return f"{local.date().isoformat()}/{name}" if elapsed >= start_offset(feed, name) else None


def window_end(now: datetime.datetime, timezone: str, name: str) -> datetime.datetime:
    """When the window `name` that is open at `now` closes (in UTC)."""
    zone = zoneinfo.ZoneInfo(timezone)
    local = now.astimezone(zone)
    end = datetime.datetime.combine(local.date(), datetime.time(), tzinfo=zone) + datetime.timedelta(
        hours=WINDOWS[name].end
    )
    return end.astimezone(datetime.UTC)
