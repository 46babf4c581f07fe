"""Schedules with an injected clock and a real store: every form, DST edges, catch-up once,
a new feed, the old window names, claims shared by two schedulers."""

import datetime
import sqlite3
import types
import zoneinfo

import pytest

from daemon import schedules
from daemon.scheduler import FeedScheduler, claim_slot, has_claims
from daemon.store.sqlite import SqliteStore

UTC = datetime.UTC
NEW_YORK = "America/New_York"


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).astimezone(UTC)


def local(instant: datetime.datetime, zone: str = NEW_YORK) -> str:
    return instant.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M%z")


def following(text: str, start: str, count: int, zone: str = NEW_YORK, direction="import", feed="f") -> list[str]:
    entry, moment, found = schedules.parse(text, direction), at(start), []
    for _ in range(count):
        moment = entry.next_after(moment, zone, feed)
        found.append(local(moment, zone))
    return found


@pytest.mark.parametrize(
    "text, start, expected",
    [
        ("every 15m", "2027-05-03T09:50-04:00", ["2027-05-03 10:00-0400", "2027-05-03 10:15-0400"]),
        (
            "every 6h",
            "2027-05-03T09:50-04:00",
            ["2027-05-03 12:00-0400", "2027-05-03 18:00-0400", "2027-05-04 00:00-0400"],
        ),  # fmt: skip
        ("every 5h", "2027-05-03T21:00-04:00", ["2027-05-04 00:00-0400", "2027-05-04 05:00-0400"]),
        ("at 06:15", "2027-05-03T06:15-04:00", ["2027-05-04 06:15-0400"]),
        ("at 06:15 on mon-fri", "2027-05-07T07:00-04:00", ["2027-05-10 06:15-0400", "2027-05-11 06:15-0400"]),
        (
            "at 07:30, 19:30 on sat,sun",
            "2027-05-07T07:00-04:00",
            ["2027-05-08 07:30-0400", "2027-05-08 19:30-0400", "2027-05-09 07:30-0400"],
        ),  # fmt: skip
        ("cron 15 6 * * 1-5", "2027-05-07T07:00-04:00", ["2027-05-10 06:15-0400", "2027-05-11 06:15-0400"]),
        ("overnight", "2027-05-03T09:00-04:00", ["2027-05-04 03:00-0400"]),
    ],
)
def test_each_form_gives_its_next_times(text, start, expected):
    assert following(text, start, len(expected)) == expected


def test_dst_spring_forward_a_skipped_time_runs_once_when_the_clock_jumps():
    # 2027-03-14: New York's clocks go from 02:00 EST to 03:00 EDT.
    assert following("at 02:30", "2027-03-13T12:00-05:00", 3) == [
        "2027-03-14 03:00-0400", "2027-03-15 02:30-0400", "2027-03-16 02:30-0400"]  # fmt: skip
    assert following("cron 30 2 * * *", "2027-03-13T12:00-05:00", 2) == ["2027-03-14 03:00-0400",
                                                                          "2027-03-15 02:30-0400"]  # fmt: skip
    assert following("every 15m", "2027-03-14T01:30-05:00", 3) == [
        "2027-03-14 01:45-0500", "2027-03-14 03:00-0400", "2027-03-14 03:15-0400"]  # fmt: skip


def test_dst_fall_back_a_daily_time_never_runs_twice_and_an_interval_runs_in_both_hours():
    # 2027-11-07: New York's clocks go from 02:00 EDT back to 01:00 EST.
    assert following("at 01:30", "2027-11-06T12:00-04:00", 2) == ["2027-11-07 01:30-0400", "2027-11-08 01:30-0500"]
    assert following("cron 30 1 * * *", "2027-11-06T12:00-04:00", 2) == ["2027-11-07 01:30-0400",
                                                                          "2027-11-08 01:30-0500"]  # fmt: skip
    assert following("every 30m", "2027-11-07T00:45-04:00", 5) == [
        "2027-11-07 01:00-0400", "2027-11-07 01:30-0400", "2027-11-07 01:00-0500", "2027-11-07 01:30-0500",
        "2027-11-07 02:00-0500"]  # fmt: skip


@pytest.mark.parametrize(
    "text, error",
    [
        ("cron 61 6 * * *", "cron minute 61 out of range 0-59"),
        ("cron 15 24 * * *", "cron hour 24 out of range 0-23"),
        ("cron 15 6 * *", "cron takes five fields"),
        ("at 25:00", "'25:00' is not a time of day"),
        ("at 06:15 on someday", "'someday' is not a day or range of days"),
        ("every 0m", "is not between 1 minute and 24 hours"),
        ("every 1w", "is not an interval"),
        ("midnight", "'midnight' is not a schedule"),
        ("00-03", "is an export block"),
    ],
)
def test_a_bad_entry_says_what_is_wrong(text, error):
    with pytest.raises(schedules.ScheduleError, match=error):
        schedules.parse(text, "import")


class FakeCore:
    def __init__(self, tmp_path, timezone=NEW_YORK, schedule=("overnight",), direction="import", name="students"):
        self.feed = types.SimpleNamespace(name=name, enabled=True, schedule=schedule, direction=direction)
        partner = types.SimpleNamespace(runs=lambda feed: True)
        self.config = types.SimpleNamespace(
            daemon=types.SimpleNamespace(timezone=timezone), feeds=lambda: [(partner, self.feed)]
        )
        self.store = SqliteStore(tmp_path / "dropd.db")


def scheduler_at(core, clock_box):
    requested = []
    scheduler = FeedScheduler(
        lambda: core.config,
        lambda feed, key: claim_slot(core.store, feed, key),
        lambda feed, trigger: requested.append((feed, trigger)),
        lambda feed, pattern: has_claims(core.store, feed, pattern),
        clock=lambda: clock_box[0],
    )
    return scheduler, requested


def tick_every_minute(scheduler, clock, end, minutes: int = 1) -> list[str]:
    """The claim keys of the runs requested."""
    claimed = []
    while clock[0] < end:
        claimed += [key for _, key in scheduler.tick()]
        clock[0] += datetime.timedelta(minutes=minutes)
    return claimed


def test_a_new_feed_starts_from_its_next_time_and_then_runs_each_once(tmp_path):
    core = FakeCore(tmp_path, schedule=("at 06:15",))
    clock = [at("2027-05-03T09:00-04:00")]
    scheduler, requested = scheduler_at(core, clock)
    assert scheduler.tick() == [], "06:15 passed before the feed was seen: not run"
    tick_every_minute(scheduler, clock, at("2027-05-05T12:00-04:00"))
    assert requested == [("students", "schedule:at 06:15")] * 2


def test_a_daemon_down_over_several_times_catches_up_once_when_it_starts(tmp_path):
    core = FakeCore(tmp_path, schedule=("every 1h",))
    clock = [at("2027-05-03T09:30-04:00")]
    scheduler, requested = scheduler_at(core, clock)
    tick_every_minute(scheduler, clock, at("2027-05-03T11:30-04:00"))
    assert len(requested) == 2  # 10:00 and 11:00
    clock[0] = at("2027-05-03T17:20-04:00")  # down from 11:30 to 17:20: six times missed
    restarted, requested_again = scheduler_at(core, clock)
    restarted.tick()
    restarted.tick()
    assert requested_again == [("students", "schedule:every 1h")], "one catch-up, not six"
    assert scheduler_at(core, clock)[0].tick() == [], "a second instance finds the time claimed"


def test_a_daemon_started_inside_an_old_window_still_runs_it_and_once(tmp_path):
    core = FakeCore(tmp_path)
    clock = [at("2026-11-23T04:10:00-05:00")]
    scheduler, requested = scheduler_at(core, clock)
    scheduler.tick()
    scheduler.tick()
    restarted, requested_again = scheduler_at(core, clock)
    restarted.tick()
    assert requested == [("students", "window:overnight")] and requested_again == []
    (tmp_path / "other").mkdir()
    later, nothing = scheduler_at(FakeCore(tmp_path / "other"), [at("2026-11-23T05:00:01-05:00")])
    later.tick()
    assert nothing == [], "a new feed does not run a window that closed before it was seen"


@pytest.mark.parametrize(
    "timezone, day",
    [
        (NEW_YORK, "2027-03-14"),  # spring forward 02:00 -> 03:00
        (NEW_YORK, "2027-11-07"),  # fall back 02:00 -> 01:00
        ("Europe/Berlin", "2027-03-28"),
        ("Europe/Berlin", "2027-10-31"),
        ("America/Santiago", "2027-09-05"),  # DST at midnight local
        ("Australia/Lord_Howe", "2027-04-04"),  # a half-hour shift
    ],
)
def test_dst_days_run_each_daily_time_exactly_once(tmp_path, timezone, day):
    entries = ("overnight", "morning", "at 02:30", "at 01:30", "at 00:00", "cron 30 2 * * *")
    core = FakeCore(tmp_path, timezone, schedule=entries)
    start = datetime.datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=UTC) - datetime.timedelta(hours=38)
    clock = [start]
    scheduler, requested = scheduler_at(core, clock)
    tick_every_minute(scheduler, clock, start + datetime.timedelta(hours=72), minutes=3)
    zone = zoneinfo.ZoneInfo(timezone)
    with sqlite3.connect(tmp_path / "dropd.db") as db:
        rows = db.execute("SELECT slot FROM window_claims").fetchall()
    days = {}
    for (key,) in rows:
        if "@" in key:
            text, stamp = key.split("@")
            date = datetime.datetime.fromisoformat(stamp).astimezone(zone).date().isoformat()
        else:
            date, text = key.split("/")
        days.setdefault(date, []).append(text)
    assert sorted(days[day]) == sorted(entries), days[day]
    assert len(rows) - len(entries) <= len(requested) <= len(rows), "a first claim may start without a run"


EXPORT_BLOCKS = ("00-03", "03-06", "06-09", "09-12", "12-15", "15-18", "18-21", "21-24")


@pytest.mark.parametrize("timezone, day", [(NEW_YORK, "2027-03-14"), (NEW_YORK, "2027-11-07")])
def test_export_blocks_run_once_each_at_their_feeds_moment_even_on_dst_days(tmp_path, timezone, day):
    core = FakeCore(tmp_path, timezone, schedule=EXPORT_BLOCKS, direction="export")
    start = datetime.datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=UTC) - datetime.timedelta(hours=14)
    clock = [start]
    scheduler, requested = scheduler_at(core, clock)
    claimed = tick_every_minute(scheduler, clock, start + datetime.timedelta(hours=48))
    assert sorted(key for key in claimed if key.startswith(day)) == sorted(f"{day}/{block}" for block in EXPORT_BLOCKS)
    assert len(requested) == len(claimed) == len(set(claimed))


def test_different_export_feeds_run_at_different_moments_of_a_block_and_retry_until_it_ends():
    block = schedules.parse("00-03", "export")
    opens = at("2026-11-23T00:00-05:00")
    moments = {feed: block.next_after(opens - datetime.timedelta(seconds=1), NEW_YORK, feed) for feed in "abcd"}
    assert len(set(moments.values())) == 4
    assert all(opens <= moment < opens + datetime.timedelta(hours=2) for moment in moments.values())
    assert block.retry_until(moments["a"], NEW_YORK, "a") == at("2026-11-23T03:00-05:00")
    hourly = schedules.parse("every 1h", "export")
    assert schedules.retry_deadline("schedule:every 1h", "export", NEW_YORK, "a", at("2026-11-23T10:20-05:00")) == (
        hourly.next_after(at("2026-11-23T10:20-05:00"), NEW_YORK)
    )


def test_next_runs_merge_entries_in_order_each_time_once():
    entries = [schedules.parse(text) for text in ("at 06:00", "every 6h", "at 07:00 on sat")]
    found = schedules.next_runs(entries, at("2027-05-07T05:00-04:00"), NEW_YORK, "f", 5)
    assert [local(instant) for instant in found] == [
        "2027-05-07 06:00-0400", "2027-05-07 12:00-0400", "2027-05-07 18:00-0400", "2027-05-08 00:00-0400",
        "2027-05-08 06:00-0400"]  # fmt: skip
