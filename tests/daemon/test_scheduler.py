"""Import windows with an injected clock and a real store: catch-up, once only, DST."""

import datetime
import types

import pytest

from daemon.scheduler import WindowScheduler, claim_window
from daemon.store.sqlite import SqliteStore
from daemon.windows import open_window

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    "moment, window, expected",
    [
        ("2026-11-23T03:00:00-05:00", "overnight", "2026-11-23/overnight"),
        ("2026-11-23T04:59:59-05:00", "overnight", "2026-11-23/overnight"),
        ("2026-11-23T05:00:00-05:00", "overnight", None),
        ("2026-11-23T02:59:59-05:00", "overnight", None),
        ("2026-11-23T10:30:00-05:00", "morning", "2026-11-23/morning"),
        ("2026-11-23T15:59:00-05:00", "afternoon", "2026-11-23/afternoon"),
        ("2026-11-23T18:00:00-05:00", "evening", "2026-11-23/evening"),
        ("2026-11-23T20:00:00-05:00", "evening", None),
    ],
)
def test_windows_are_computed_in_the_configured_zone(moment, window, expected):
    assert open_window(at(moment), "America/New_York", window) == expected


class FakeCore:
    def __init__(self, tmp_path, timezone="America/New_York", schedule=("overnight",)):
        feed = types.SimpleNamespace(name="students", enabled=True, schedule=schedule)
        partner = types.SimpleNamespace(runs=lambda feed: True)
        self.config = types.SimpleNamespace(
            daemon=types.SimpleNamespace(timezone=timezone), feeds=lambda: [(partner, feed)]
        )
        self.store = SqliteStore(tmp_path / "dropd.db")


def scheduler_at(core, clock_box):
    requested = []
    scheduler = WindowScheduler(
        lambda: core.config,
        lambda feed, key: claim_window(core.store, feed, key),
        lambda feed, trigger: requested.append((feed, trigger)),
        clock=lambda: clock_box[0],
    )
    return scheduler, requested


def test_a_daemon_started_inside_a_window_catches_up_once(tmp_path):
    core = FakeCore(tmp_path)
    clock = [at("2026-11-23T04:10:00-05:00")]
    scheduler, requested = scheduler_at(core, clock)
    scheduler.tick()
    scheduler.tick()
    # A restart: a new scheduler on the same store finds the window claimed.
    restarted, requested_again = scheduler_at(core, clock)
    restarted.tick()
    assert requested == [("students", "window:overnight")] and requested_again == []


def test_a_daemon_started_after_the_window_closed_does_not_run_it(tmp_path):
    core = FakeCore(tmp_path)
    scheduler, requested = scheduler_at(core, [at("2026-11-23T05:00:01-05:00")])
    scheduler.tick()
    assert requested == []


def tick_every_minute(scheduler, clock, start, end) -> list[str]:
    """The windows claimed, as "local date/name"."""
    claimed = []
    while clock[0] < end:
        claimed += [key for _, key in scheduler.tick()]
        clock[0] += datetime.timedelta(minutes=1)
    return claimed


@pytest.mark.parametrize(
    "timezone, day",
    [
        ("America/New_York", "2026-03-08"),  # spring forward 02:00 -> 03:00
        ("America/New_York", "2026-11-01"),  # fall back 02:00 -> 01:00
        ("Europe/Berlin", "2026-03-29"),
        ("Europe/Berlin", "2026-10-25"),
        ("America/Santiago", "2026-09-06"),  # DST at midnight local
        ("Australia/Lord_Howe", "2026-04-05"),  # a half-hour shift
    ],
)
def test_dst_days_run_each_window_exactly_once(tmp_path, timezone, day):
    core = FakeCore(tmp_path, timezone, schedule=("overnight", "morning", "afternoon", "evening"))
    start = datetime.datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=UTC) - datetime.timedelta(hours=14)
    clock = [start]
    scheduler, requested = scheduler_at(core, clock)
    windows = tick_every_minute(scheduler, clock, start, start + datetime.timedelta(hours=48))
    local_day_windows = [key for key in windows if key.startswith(day)]
    assert sorted(local_day_windows) == sorted(
        f"{day}/{name}" for name in ("overnight", "morning", "afternoon", "evening")
    )
    assert len(requested) == len(windows)


EXPORT_BLOCKS = ("00-03", "03-06", "06-09", "09-12", "12-15", "15-18", "18-21", "21-24")


@pytest.mark.parametrize(
    "timezone, day",
    [("America/New_York", "2026-03-08"), ("America/New_York", "2026-11-01"), ("America/Santiago", "2026-09-06")],
)
def test_export_blocks_run_once_each_at_their_feeds_moment_even_on_dst_days(tmp_path, timezone, day):
    core = FakeCore(tmp_path, timezone, schedule=EXPORT_BLOCKS)
    start = datetime.datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=UTC) - datetime.timedelta(hours=14)
    clock = [start]
    scheduler, requested = scheduler_at(core, clock)
    claimed = tick_every_minute(scheduler, clock, start, start + datetime.timedelta(hours=48))
    assert sorted(key for key in claimed if key.startswith(day)) == sorted(f"{day}/{block}" for block in EXPORT_BLOCKS)
    assert len(requested) == len(claimed) == len(set(claimed))


def test_different_export_feeds_run_at_different_moments_of_a_block():
    from daemon.windows import due_window

    block_start = datetime.datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 00:00 in New York
    first_due = {}
    for feed in ("alpha", "bravo", "charlie", "delta"):
        for minute in range(180):
            if due_window(block_start + datetime.timedelta(minutes=minute), "America/New_York", "00-03", feed):
                first_due[feed] = minute
                break
    assert len(set(first_due.values())) == 4 and all(minute < 120 for minute in first_due.values())
