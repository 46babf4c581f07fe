"""When a feed runs: every form a `schedule` entry (or `expect_by`) is written in, each able to
say the next time after a moment and the last time at or before it, in the feed's time zone.

    "every 15m", "every 6h"     from the local day's start, every interval (1 minute to 24 hours);
                                an interval that does not divide the day starts again at midnight
    "at 06:15"                  daily; "at 06:15 on mon-fri", "at 18:00 on sat,sun", "at 7:30, 19:30"
    "cron 15 6 * * 1-5"         five fields, read by cronsim
    "overnight", "morning", ... the old import windows: at their opening hour (03, 10, 14, 18)
    "00-03" ... "21-24"         the old export blocks: at the feed's own moment in the block
                                (`start_offset`), failed pushes retried until the block ends

Daylight saving time: times are wall-clock times of the zone. A time the clock skips runs once,
when the clock jumps (02:30 on a spring-forward day runs at 03:00). A daily time the clock
repeats runs once, the first time (a fall-back day never runs a daily time twice). An
interval's slots in a repeated hour run in both copies of the hour: they are different instants,
and "every 15m" promises one each 15 minutes. cron entries follow Debian cron's rules, which
are the same (cronsim implements them: a job at a fixed hour runs once, a job with a wildcard
hour runs in both copies).

A computed next time rather than the `schedule` package: `schedule` runs jobs in the process's
local time only, and can express neither cron nor these DST rules.
"""

import datetime
import functools
import hashlib
import re
import zoneinfo
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from cronsim import CronSim, CronSimError

UTC = datetime.UTC
ON_ARRIVAL = "on_arrival"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
IMPORT_WINDOWS = {"overnight": 3, "morning": 10, "afternoon": 14, "evening": 18}
"""The old import windows, by their opening hour."""
EXPORT_BLOCKS = {f"{hour:02d}-{hour + 3:02d}": hour for hour in range(0, 24, 3)}
RETRY_ROOM = 3600.0
"""An export feed's moment falls in its block's first part; the last hour is left for retries."""
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
LOOK_DAYS = 8
"""Days searched for a daily entry's next or last time (a weekly one included)."""


class ScheduleError(ValueError):
    """An entry that cannot be read; the message says what is wrong and how to write it."""


def _wall_instants(wall: datetime.datetime, zone: zoneinfo.ZoneInfo, repeated: bool) -> list[datetime.datetime]:
    """The instants (UTC) at which the zone's clock shows `wall` (naive): one; two in a repeated
    hour when `repeated` (else the first); for a skipped time, the instant the clock jumps."""
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:  # shown twice
        return [first.astimezone(UTC), second.astimezone(UTC)] if repeated else [first.astimezone(UTC)]
    low, high = int(second.timestamp()), int(first.timestamp())  # the jump lies between
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return [datetime.datetime.fromtimestamp(high, UTC)]


@dataclass(frozen=True)
class Entry(ABC):
    """One entry of a `schedule`: its times, how a run it starts is recorded and claimed."""

    text: str

    @property
    def trigger(self) -> str:
        """What a run it starts records as its trigger."""
        return f"schedule:{self.text}"

    @abstractmethod
    def next_after(self, moment: datetime.datetime, timezone: str, feed: str = "") -> datetime.datetime:
        """The first time strictly after `moment` (UTC)."""

    @abstractmethod
    def last_at_or_before(self, moment: datetime.datetime, timezone: str, feed: str = "") -> datetime.datetime:
        """The last time at or before `moment` (UTC)."""

    def claim_key(self, slot: datetime.datetime, timezone: str) -> str:
        """The key the slot is claimed under in the store (it runs once, across instances)."""
        return f"{self.text}@{slot.astimezone(UTC).isoformat(timespec='seconds')}"

    @property
    def claim_pattern(self) -> str:
        """A SQL LIKE pattern matching every key of this entry."""
        return self.text.replace("%", r"\%").replace("_", r"\_") + "@%"

    def retry_until(self, slot: datetime.datetime, timezone: str, feed: str = "") -> datetime.datetime:
        """Until when an export started at `slot` retries a failed push: its next time."""
        return self.next_after(slot, timezone, feed)

    def catches_up_fresh(self, slot: datetime.datetime, now: datetime.datetime, timezone: str, feed: str) -> bool:
        """Whether a feed with no run history yet runs a `slot` that passed before it was seen
        (only while an old window is still open, as windows always did)."""
        return False


@dataclass(frozen=True)
class _ByDay(Entry):
    """An entry whose times are wall-clock times of each local day (`_day`)."""

    def next_after(self, moment: datetime.datetime, timezone: str, feed: str = "") -> datetime.datetime:
        zone = zoneinfo.ZoneInfo(timezone)
        today = moment.astimezone(zone).date()
        for days in range(-1, LOOK_DAYS):
            for instant in self._day(today + datetime.timedelta(days=days), zone, feed):
                if instant > moment:
                    return instant
        raise AssertionError(f"{self.text!r} has no time within {LOOK_DAYS} days")

    def last_at_or_before(self, moment: datetime.datetime, timezone: str, feed: str = "") -> datetime.datetime:
        zone = zoneinfo.ZoneInfo(timezone)
        today = moment.astimezone(zone).date()
        for days in range(1, -LOOK_DAYS, -1):
            for instant in reversed(self._day(today + datetime.timedelta(days=days), zone, feed)):
                if instant <= moment:
                    return instant
        raise AssertionError(f"{self.text!r} has no time within {LOOK_DAYS} days")

    @abstractmethod
    def _day(self, day: datetime.date, zone: zoneinfo.ZoneInfo, feed: str) -> list[datetime.datetime]:
        """Its times on local day `day`, as sorted instants (UTC) without repeats."""


@dataclass(frozen=True)
class Daily(_ByDay):
    times: tuple[tuple[int, int], ...] = ()
    days: frozenset[int] = field(default_factory=lambda: frozenset(range(7)))

    def _day(self, day, zone, feed):
        if day.weekday() not in self.days:
            return []
        walls = [datetime.datetime.combine(day, datetime.time(h, m)) for h, m in self.times]
        return sorted({instant for wall in walls for instant in _wall_instants(wall, zone, repeated=False)})


@dataclass(frozen=True)
class Interval(_ByDay):
    minutes: int = 60

    def _day(self, day, zone, feed):
        start = datetime.datetime.combine(day, datetime.time())
        walls = [start + datetime.timedelta(minutes=m) for m in range(0, 24 * 60, self.minutes)]
        return sorted({instant for wall in walls for instant in _wall_instants(wall, zone, repeated=True)})


class _OldWindowName:
    """What the old window and block names keep: their trigger (`window:NAME`) and their claim
    keys (`LOCAL-DATE/NAME`, as before schedules, so an upgrade neither repeats nor loses one)."""

    text: str

    @property
    def trigger(self) -> str:
        return f"window:{self.text}"

    def claim_key(self, slot: datetime.datetime, timezone: str) -> str:
        return f"{slot.astimezone(zoneinfo.ZoneInfo(timezone)).date().isoformat()}/{self.text}"

    @property
    def claim_pattern(self) -> str:
        return f"%/{self.text}"


@dataclass(frozen=True)
class ImportWindow(_OldWindowName, Daily):
    """An old import window's name: at its opening hour, two hours open."""

    def catches_up_fresh(self, slot, now, timezone, feed):
        return now - slot < datetime.timedelta(hours=2)


@dataclass(frozen=True)
class ExportBlock(_OldWindowName, _ByDay):
    """An old export block: the feed's own moment in the block; retries until the block ends."""

    hour: int = 0

    def _bounds(self, day, zone) -> tuple[datetime.datetime, datetime.datetime]:
        opens = _wall_instants(datetime.datetime.combine(day, datetime.time(self.hour)), zone, False)[0]
        end = datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(hours=self.hour + 3)
        return opens, _wall_instants(end, zone, False)[0]

    def _day(self, day, zone, feed):
        opens, closes = self._bounds(day, zone)
        return [opens + datetime.timedelta(seconds=start_offset(feed, (closes - opens).total_seconds()))]

    def retry_until(self, slot, timezone, feed=""):
        zone = zoneinfo.ZoneInfo(timezone)
        return self._bounds(slot.astimezone(zone).date(), zone)[1]

    def catches_up_fresh(self, slot, now, timezone, feed):
        return now < self.retry_until(slot, timezone, feed)


@dataclass(frozen=True)
class Cron(Entry):
    expression: str = ""

    def next_after(self, moment, timezone, feed=""):
        local = moment.astimezone(zoneinfo.ZoneInfo(timezone)).replace(second=0, microsecond=0)
        for instant in CronSim(self.expression, local):
            if instant > moment:
                return instant.astimezone(UTC)
        raise AssertionError("cronsim ends")

    def last_at_or_before(self, moment, timezone, feed=""):
        start = moment.astimezone(zoneinfo.ZoneInfo(timezone)).replace(second=0, microsecond=0)
        start += datetime.timedelta(minutes=1)
        for instant in CronSim(self.expression, start, reverse=True):
            if instant <= moment:
                return instant.astimezone(UTC)
        raise AssertionError("cronsim ends")


def start_offset(feed: str, length: float) -> float:
    """Seconds after an export block opens at which `feed` runs in it: a moment fixed by the
    feed's name, within the block's `length` less an hour (so many feeds do not all push at
    the block's first second)."""
    fraction = int.from_bytes(hashlib.sha256(feed.encode()).digest()[:4], "big") / 2**32
    return float(round(fraction * max(length - RETRY_ROOM, 0.0)))


def _times(text: str) -> tuple[tuple[int, int], ...]:
    times = []
    for part in re.split(r"\s*,\s*", text.strip()):
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", part)
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise ScheduleError(f"{part!r} is not a time of day; write it as HH:MM, like 06:15")
        times.append((int(match.group(1)), int(match.group(2))))
    return tuple(sorted(set(times)))


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in re.split(r"\s*,\s*", text.strip().lower()):
        ends = part.split("-")
        if len(ends) > 2 or any(end not in DAYS for end in ends):
            raise ScheduleError(f"{part!r} is not a day or range of days; write mon-fri, sat,sun or mon,wed,fri")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)])
    return frozenset(days)


def _interval(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*(m|min|h)", text.strip())
    if not match:
        raise ScheduleError(f"{text!r} is not an interval; write it like 15m or 6h")
    minutes = int(match.group(1)) * (60 if match.group(2) == "h" else 1)
    if not 1 <= minutes <= 24 * 60:
        raise ScheduleError(f"every {text.strip()} is not between 1 minute and 24 hours")
    return minutes


def _cron(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(f"cron takes five fields (minute hour day-of-month month day-of-week), not {len(fields)}")
    for value, (name, low, high) in zip(fields, CRON_FIELDS, strict=True):
        for number in re.findall(r"(?<![/\d])\d+", value):
            if not low <= int(number) <= high:
                raise ScheduleError(f"cron {name} {number} out of range {low}-{high}")
    try:
        CronSim(expression, datetime.datetime(2027, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ScheduleError(f"cron {expression!r}: {str(exc).lower()}") from None
    return expression


@functools.cache
def parse(text: str, direction: str = "import") -> Entry | None:
    """The entry `text` of a feed of `direction` ("import" or "export"); None for on_arrival.
    ScheduleError says what is wrong with it."""
    written = " ".join(str(text).split())
    if written == ON_ARRIVAL:
        if direction == "export":
            raise ScheduleError("on_arrival is for imports; an export runs on a schedule")
        return None
    if written in IMPORT_WINDOWS:
        if direction == "export":
            raise ScheduleError(f"{written!r} is an import window; exports use blocks like 00-03, or at/every/cron")
        return ImportWindow(written, times=((IMPORT_WINDOWS[written], 0),))
    if written in EXPORT_BLOCKS:
        if direction == "import":
            raise ScheduleError(f"{written!r} is an export block; imports use at/every/cron or a window name")
        return ExportBlock(written, hour=EXPORT_BLOCKS[written])
    keyword, _, rest = written.partition(" ")
    if keyword == "every":
        return Interval(written, minutes=_interval(rest))
    if keyword == "at":
        times, on, days = rest.partition(" on ")
        return Daily(written, times=_times(times), days=_days(days) if on else frozenset(range(7)))
    if keyword == "cron":
        return Cron(written, expression=_cron(rest))
    windows = ", ".join([*IMPORT_WINDOWS] if direction == "import" else [*EXPORT_BLOCKS])
    raise ScheduleError(
        f'{written!r} is not a schedule; write on_arrival, "every 15m", "at 06:15 on mon-fri", '
        f'"cron 15 6 * * 1-5" or a window name ({windows})'
    )


def next_runs(entries, moment: datetime.datetime, timezone: str, feed: str, count: int) -> list[datetime.datetime]:
    """The next `count` times after `moment` of all `entries` together, each once."""
    found: list[datetime.datetime] = []
    upcoming = {entry: entry.next_after(moment, timezone, feed) for entry in entries}
    while upcoming and len(found) < count:
        entry = min(upcoming, key=upcoming.get)
        instant = upcoming[entry]
        if not found or instant > found[-1]:
            found.append(instant)
        upcoming[entry] = entry.next_after(instant, timezone, feed)
    return found


def retry_deadline(trigger: str, direction: str, timezone: str, feed: str, now: datetime.datetime):
    """Until when a run started by `trigger` retries a failed push (the entry's next time, or
    an old export block's end); None for runs not started by the schedule."""
    kind, _, text = trigger.partition(":")
    if kind not in ("window", "schedule"):
        return None
    try:
        entry = parse(text, direction)
    except ScheduleError:
        return None
    if entry is None:
        return None
    return entry.retry_until(entry.last_at_or_before(now, timezone, feed), timezone, feed)
