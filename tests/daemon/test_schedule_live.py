"""A near `at HH:MM` in the running daemon, on the real clock; `dropd schedule` lists it."""

import datetime
import json
import zoneinfo

from tests.helpers import place, students_feed


def test_a_feed_runs_at_its_at_time_in_the_running_daemon_and_dropd_schedule_says_when(dropd):
    zone = zoneinfo.ZoneInfo("America/New_York")
    now = datetime.datetime.now(zone)
    due = (now + datetime.timedelta(minutes=2 if now.second > 40 else 1)).replace(second=0, microsecond=0)
    entry = f"at {due:%H:%M}"
    dropd.add_feed_partner("northfield", [students_feed(schedule=[entry], expect_by="at 23:59")])
    dropd.start()
    place(dropd, "StudentData_1.csv", [1, 2])
    listing = json.loads(dropd.cli("schedule", "--feed", "students", "--json").stdout)
    assert listing[0]["schedule"] == [entry]
    first = datetime.datetime.fromisoformat(listing[0]["next"][0]["local"])
    assert first == due and len(listing[0]["next"]) == 5
    assert f"{due:%a %Y-%m-%d %H:%M %Z}" in dropd.cli("schedule").stdout
    [run] = dropd.wait_for_runs("students", timeout=150)
    assert run["trigger"] == f"schedule:{entry}" and run["status"] == "success"
    started = datetime.datetime.fromisoformat(run["started"])
    assert due <= started < due + datetime.timedelta(seconds=30), (due, started)
