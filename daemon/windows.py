"""The daily windows feeds run in, in the daemon's time zone: one table for imports and exports.

Import windows (two hours each) are named; export blocks are the eight 3-hour blocks of the
day, named by their hours ("00-03" ... "21-24"). A window is open from its start hour up to,
not including, its end hour, local time.
"""

import datetime
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
