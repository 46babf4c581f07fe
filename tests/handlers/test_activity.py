"""Activity (engagement events) imports through the running daemon."""

import datetime
import json
from pathlib import Path

import pytest

from tests.helpers import CONTACTS_HEADER, students_feed

HEADER = "cID,_id,mcID,message_name,message_sent,action,time,first"


def recent(days_ago: float = 1) -> str:
    return (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def activity_feed(**overrides):
    feed = {
        "name": "activity",
        "kind": "activity",
        "path": "/activity",
        "prefix": "cordial",
        "files": "all",
        "schedule": ["on_arrival"],
    }
    feed.update(overrides)
    return feed


def events(dropd) -> dict:
    found = json.loads(dropd.cli("events", "--partner", "northfield", "--json").stdout)
    return {event["event_id"]: event for event in found}


def drop(dropd, name, text):
    before = len(dropd.runs("--feed", "activity"))
    dropd.upload("northfield", f"/activity/{name}", text.encode())
    return dropd.wait_for_runs("activity", before + 1)[-1]


@pytest.fixture
def running(dropd):
    dropd.add_feed_partner("northfield", [activity_feed(), students_feed(schedule=[])])
    dropd.start()
    return dropd


def test_typed_fields_dedupe_and_default_lookback(running):
    text = (
        f"{HEADER}\n"
        f"c1,e1,m1,Welcome,{recent(2)[:10]},open,{recent(1)},true\n"
        f"c1,e2,m1,Welcome,2026-11-20T09:30:00,click,{recent(0.5)},NO\n"
        f"c2,e3,m2,Old news,,open,{recent(30)},1\n"
    )
    run = drop(running, "cordial_1.csv", text)
    assert run["status"] == "success"
    assert (run["details"]["created"], run["details"]["too_old"]) == (2, 1)
    stored = events(running)
    assert set(stored) == {"e1", "e2"}
    assert stored["e1"]["fields"]["first"] is True and stored["e2"]["fields"]["first"] is False
    # naive date-time: the configured zone (America/New_York, UTC-5 in November)
    assert stored["e2"]["fields"]["message_sent"] == "2026-11-20T14:30:00+00:00"
    again = drop(running, "cordial_2.csv", text.replace("true", "TRUE"))
    assert (again["details"]["created"], again["details"]["unchanged"]) == (0, 2)


def test_bad_values_are_partial_unless_id_or_time(running):
    text = (
        f"{HEADER}\n"
        f"c1,e1,m1,Welcome,not-a-date,open,{recent()},maybe\n"
        f"c1,e2,m1,Welcome,,open,yesterday,true\n"
        f"c1,,m1,Welcome,,open,{recent()},true\n"
    )
    run = drop(running, "cordial_1.csv", text)
    assert (run["rows_applied"], run["rows_rejected"], run["details"]["partial"]) == (1, 2, 1)
    lines = Path(run["error_file"]).read_text(encoding="utf-8-sig").splitlines()[1:]
    assert [line.split(",")[:3] for line in lines] == [
        ["2", "invalid-attribute-data", "partial"],
        ["2", "invalid-attribute-data", "partial"],
        ["3", "invalid-attribute-data", "complete"],
        ["4", "missing-value", "complete"],
    ]
    assert "message_sent" not in events(running)["e1"]["fields"]


def test_explicit_import_since(dropd):
    dropd.add_feed_partner("northfield", [activity_feed(import_since="2020-01-01")])
    dropd.start()
    run = drop(
        dropd, "cordial_1.csv", f"{HEADER}\nc1,e1,,,,open,2021-06-01T00:00:00Z,\nc1,e2,,,,open,2019-12-31T00:00:00Z,\n"
    )
    assert (run["details"]["created"], run["details"]["too_old"]) == (1, 1)


def test_opt_out_event_opts_the_contact_out(running, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text(f"{CONTACTS_HEADER}\nc1,Ann,One,202-555-0101,,,N,\n")
    running.cli("ingest", "students", str(roster))
    run = drop(running, "cordial_1.csv", f"{HEADER}\nc1,e9,,,,opt-out,{recent()},\n")
    assert run["details"]["opted_out"] == 1
    contacts = json.loads(running.cli("contacts", "--partner", "northfield", "--json").stdout)
    assert contacts[0]["opted_out"] is True


def test_custom_mapping_is_checked_at_config_time(dropd):
    dropd.add_feed_partner("northfield", [activity_feed(mapping={"id": {"field": "event_id", "type": "date"}})])
    dropd.write_config()
    result = dropd.cli("check-config", check=False)
    assert result.returncode == 1
    assert "feed[activity].mapping: required field(s) not mapped: contact_id, time" in result.stderr


def test_opt_out_event_opts_a_subscriber_out(dropd, tmp_path):
    subscribers = {
        "name": "newsletter", "kind": "subscribers", "path": "/lists", "prefix": "list", "schedule": [],
        "columns": {"email": "Email"},
    }  # fmt: skip
    dropd.add_feed_partner("northfield", [activity_feed(), subscribers])
    dropd.start()
    members = tmp_path / "list.csv"
    members.write_text("Email\nreader@example.org\nother@example.org\n")
    dropd.cli("ingest", "newsletter", str(members))
    run = drop(dropd, "cordial_1.csv", f"{HEADER}\nReader@Example.org,e1,,,,opt-out,{recent()},\n")
    assert run["details"]["opted_out"] == 1
    listed = {s["email"]: s for s in json.loads(dropd.cli("subscribers", "--partner", "northfield", "--json").stdout)}
    assert listed["reader@example.org"]["opted_out"] is True and listed["other@example.org"]["opted_out"] is False


def test_dropd_events_prints_a_table(running):
    drop(running, "cordial_t.csv", f"{HEADER}\nc1,e1,m1,Welcome,,open,{recent()},true\n")
    lines = running.cli("events", "--partner", "northfield").stdout.splitlines()
    assert lines[0].split() == ["TIME", "EVENT", "ID", "CONTACT", "ID", "ACTION", "FIELDS"]
    assert "message_name=Welcome" in lines[1] and "{" not in lines[1]
    assert lines[-1] == "1 events"
