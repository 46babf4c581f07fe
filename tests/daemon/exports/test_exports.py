"""The export kinds, in-process against the store, to the partner's own folder: columns,
the watermark (nothing twice, nothing missed), filters, empty exports, count files, expiry."""

import csv
import json
import os
import threading
import time

import pytest

from tests.helpers import (
    CONTACTS_HEADER,
    MESSAGES_HEADER,
    conversations_feed,
    messages_feed,
    students_feed,
)


@pytest.fixture
def feeds(feeds_on_each_store):
    return feeds_on_each_store


def start(feeds, *export_feeds):
    feeds.add_feed_partner("northfield", [students_feed(), messages_feed(), *export_feeds])
    feeds.start()
    feeds.upload(
        "northfield",
        "/imports/StudentData_1.csv",
        f"{CONTACTS_HEADER}\nS1,Ada,Lovelace,202-555-0143,,CRM-1,,\n".encode(),
    )


def log_messages(feeds, name, *rows):
    feeds.upload("northfield", f"/log/{name}", (MESSAGES_HEADER + "\n" + "".join(rows)).encode())


def message(n, direction="incoming", channel="web", source="", media="", contact="S1", body=None):
    body = body or f"message {n}"
    incoming, outgoing = (body, "") if direction == "incoming" else ("", body)
    return f"{contact},{channel},2026-11-2{n % 7}T10:00:{n % 60:02d}Z,{incoming},{outgoing},{source},C{n},Camp,,,{media},m{n}\n"


def outbox(feeds) -> list:
    folder = feeds.home("northfield") / "outbox"
    return sorted(name for name in os.listdir(folder) if not name.startswith(".")) if folder.is_dir() else []


def exported(feeds, name) -> list[dict]:
    with open(feeds.home("northfield") / "outbox" / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_conversations_columns_order_and_values(feeds):
    start(feeds, conversations_feed())
    log_messages(
        feeds, "messages_1.csv", message(1), message(2, "outgoing", "twilio", "AI", media='["https://x/1.png"]'),
        message(3, body="=HYPERLINK(evil)"), message(4, contact="unknown", media="https://a/1 https://a/2"),
    )  # fmt: skip
    run = feeds.export("conversations")
    assert run["status"] == "success" and run["rows_in_file"] == 3 and run["details"]["destination"].endswith("/outbox")
    assert run["details"]["unknown_contact"] == 1
    assert run["reason"] == "unknown-contact: 1 held back until their contact is known"
    [name] = outbox(feeds)
    assert (
        name == run["file"]
        and name.startswith("conversations_")
        and name.endswith("Z.csv")
        and len(name) == len("conversations_20261127T061500Z.csv")
    )
    with open(feeds.home("northfield") / "outbox" / name, encoding="utf-8") as handle:
        assert (
            handle.readline().strip()
            == "crm_id,admithub_id,first_name,last_name,channel,campaign_id,campaign_name,timestamp,incoming,outgoing,outgoing_source,media,script_id,script_name"
        )
    rows = exported(feeds, name)
    assert [row["incoming"] or row["outgoing"] for row in rows] == ["message 1", "message 2", "'=HYPERLINK(evil)"]
    first, second = rows[0], rows[1]
    assert (first["crm_id"], first["first_name"], first["last_name"], first["channel"]) == (
        "CRM-1",
        "Ada",
        "Lovelace",
        "web",
    )
    assert first["admithub_id"] and first["timestamp"] == "2026-11-21T10:00:01Z" and first["media"] == "[]"
    assert (second["outgoing"], second["incoming"], second["outgoing_source"]) == ("message 2", "", "AI")
    assert json.loads(second["media"]) == ["https://x/1.png"]
    # Message 4's contact comes later: the message was held back, never sent blank; it goes next.
    feeds.upload(
        "northfield",
        "/imports/StudentData_2.csv",
        f"{CONTACTS_HEADER}\nunknown,Grace,Hopper,202-555-0144,,CRM-9,,\n".encode(),
    )
    later = feeds.export("conversations")
    assert later["status"] == "success" and later["rows_in_file"] == 1 and later["reason"] is None
    [held] = exported(feeds, later["file"])
    assert (held["incoming"], held["crm_id"], held["first_name"]) == ("message 4", "CRM-9", "Grace")
    assert json.loads(held["media"]) == ["https://a/1", "https://a/2"]


def test_nothing_is_sent_twice_and_nothing_missed(feeds):
    start(feeds, conversations_feed())
    log_messages(feeds, "messages_1.csv", message(1), message(2))
    assert feeds.export("conversations")["rows_in_file"] == 2
    empty = feeds.export("conversations")
    assert empty["status"] == "skipped" and empty["reason"].startswith("no-rows") and len(outbox(feeds)) == 1
    log_messages(feeds, "messages_2.csv", message(2), message(3))  # m2 again: deduplicated at import
    time.sleep(1)  # export file names have a one-second resolution
    run = feeds.export("conversations")
    assert [row["incoming"] for row in exported(feeds, run["file"])] == ["message 3"]


def test_messages_stored_while_an_export_runs_go_out_next_time(feeds, monkeypatch):
    from handlers.conversations import ConversationsExport

    start(feeds, conversations_feed())
    log_messages(feeds, "messages_1.csv", message(1), message(2))
    original = ConversationsExport.rows

    def rows_with_an_import_in_the_middle(self, tx, after, upto):
        for number, row in enumerate(original(self, tx, after, upto)):
            if number == 1:
                writer = threading.Thread(target=log_messages, args=(feeds, "messages_2.csv", message(3)))
                writer.start()
                writer.join()
            yield row

    monkeypatch.setattr(ConversationsExport, "rows", rows_with_an_import_in_the_middle)
    first = feeds.export("conversations")
    monkeypatch.undo()
    assert [row["incoming"] for row in exported(feeds, first["file"])] == ["message 1", "message 2"]
    time.sleep(1)
    second = feeds.export("conversations")
    assert [row["incoming"] for row in exported(feeds, second["file"])] == ["message 3"]


def test_a_failed_delivery_is_sent_again_next_time(feeds):
    start(feeds, conversations_feed())
    log_messages(feeds, "messages_1.csv", message(1))
    outbox_path = feeds.home("northfield") / "outbox"
    outbox_path.rmdir() if outbox_path.is_dir() else None
    outbox_path.write_text("a file where the outbox folder should be")
    failed = feeds.export("conversations")
    assert failed["status"] == "failed" and failed["reason"].startswith("delivery-failed: directory:")
    outbox_path.unlink()
    run = feeds.export("conversations")
    assert run["status"] == "success" and [row["incoming"] for row in exported(feeds, run["file"])] == ["message 1"]


def test_filters_on_channel_direction_and_outgoing_source(feeds):
    start(feeds, conversations_feed(channels=["twilio"], directions=["outgoing"], outgoing_sources=["AI", "Other"]))
    log_messages(
        feeds, "messages_1.csv", message(1, "outgoing", "twilio", "AI"), message(2, "outgoing", "twilio", "Live Chat"),
        message(3, "incoming", "twilio"), message(4, "outgoing", "web", "AI"), message(5, "outgoing", "twilio", "Other"),
    )  # fmt: skip
    run = feeds.export("conversations")
    assert [row["outgoing"] for row in exported(feeds, run["file"])] == ["message 1", "message 5"]


def test_a_filter_needs_a_value(feeds):
    feeds.add_feed_partner("northfield", [conversations_feed(channels=[])])
    feeds.write_config()
    result = feeds.cli("check-config", check=False)
    assert (
        result.returncode == 1 and "feed[conversations].channels: needs at least one of: web, twilio" in result.stderr
    )


def test_an_export_feed_needs_no_import_keys_and_refuses_them(feeds):
    feeds.add_feed_partner("northfield", [conversations_feed(archive_path="/x")])
    feeds.write_config()
    result = feeds.cli("check-config", check=False)
    assert result.returncode == 1 and "feed[conversations].archive_path: unknown key" in result.stderr


def test_count_file_and_expiry_of_old_files(feeds):
    start(feeds, conversations_feed(count_file="write", keep_days=2))
    folder = feeds.home("northfield") / "outbox"
    folder.mkdir(exist_ok=True)
    old = folder / "conversations_20200101T000000Z.csv"
    old.write_text("old\n")
    three_days_ago = time.time() - 3 * 86400
    os.utime(old, (three_days_ago, three_days_ago))
    log_messages(feeds, "messages_1.csv", message(1), message(2))
    run = feeds.export("conversations")
    assert outbox(feeds) == [run["file"], run["file"].removesuffix(".csv") + "_count.txt"]
    assert (folder / (run["file"].removesuffix(".csv") + "_count.txt")).read_text() == "2\n"


def test_engagement_export_aggregates_events_per_subscriber(feeds):
    feeds.add_feed_partner(
        "northfield",
        [
            {"name": "list", "kind": "subscribers", "path": "/lists", "prefix": "subs", "schedule": ["on_arrival"]},
            {"name": "activity", "kind": "activity", "path": "/activity", "prefix": "act", "schedule": ["on_arrival"], "import_since": "2020-01-01"},
            {"name": "engagement", "kind": "engagement_export", "prefix": "engagement", "schedule": ["03-06"]},
        ],
    )  # fmt: skip
    feeds.start()
    feeds.upload("northfield", "/lists/subs_1.csv", b"email,segment_code\nann@x.org,S1\nbob@x.org,S2\n")
    events = "cID,_id,action,time\n" + "".join(
        f"{who},{n},{action},2026-11-{day}T10:00:00Z\n"
        for n, (who, action, day) in enumerate(
            [
                ("ann@x.org", "open", 20),
                ("ANN@x.org", "open", 22),
                ("ann@x.org", "click", 21),
                ("bob@x.org", "opt-out", 23),
            ]
        )
    )
    feeds.upload("northfield", "/activity/act_1.csv", events.encode())
    run = feeds.export("engagement")
    folder = feeds.home("northfield") / "outbox"
    with open(folder / run["file"], encoding="utf-8", newline="") as handle:
        rows = {row["email"]: row for row in csv.DictReader(handle)}
    ann, bob = rows["ann@x.org"], rows["bob@x.org"]
    assert (ann["open_count"], ann["click_count"], ann["last_open"], ann["last_click"]) == (
        "2",
        "1",
        "2026-11-22T10:00:00Z",
        "2026-11-21T10:00:00Z",
    )
    assert (ann["opted_out"], ann["opted_out_since"], ann["segment"]) == ("false", "", "S1")
    assert (bob["opted_out"], bob["opted_out_since"], bob["open_count"]) == ("true", "2026-11-23T10:00:00Z", "0")


class Killed(BaseException):
    """The process dying between the upload and the commit (nothing in the run catches it)."""


def test_randomized_faults_deliver_every_message_and_none_twice_once_delivered(feeds, monkeypatch):
    import random

    from daemon.exports import runs as export_runs
    from daemon.exports.destinations import OutboxFolder
    from daemon.exports.errors import PushError

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    start(feeds, conversations_feed())
    folder = feeds.home("northfield") / "outbox"
    landed: list[tuple[str, list[str]]] = []  # every file that reached the outbox, with its messages
    fault = {"kind": None}

    class Faulty(OutboxFolder):
        def deliver(self, local, naming):
            if fault["kind"] == "cut":
                raise PushError("upload", "connection cut", transient=True)
            if fault["kind"] == "rename":
                raise PushError("rename", "rename refused", transient=True)
            name = super().deliver(local, naming)
            landed.append((name, [row["incoming"] for row in exported(feeds, name)]))
            (folder / name).unlink()  # the partner took it; the next file may have the same second
            if fault["kind"] == "kill":
                raise Killed()
            return name

    monkeypatch.setattr(export_runs, "destination_for", lambda feed, root, partner: Faulty(folder))
    sent, successes = 0, []
    for number in range(100):
        new = rng.randrange(0, 4)
        if new:
            log_messages(feeds, f"messages_{number}.csv", *(message(sent + i) for i in range(new)))
            sent += new
        fault["kind"] = rng.choice([None, None, None, "cut", "rename", "kill"])
        try:
            run = feeds.export("conversations", sleep=lambda seconds: None)
        except Killed:
            with feeds.store.transaction() as tx:  # the restart: a run left running is failed
                tx.runs.fail_interrupted()
            continue
        if run["status"] == "success":
            successes.append(landed[-1][1])
    fault["kind"] = None
    final = feeds.export("conversations")
    if final["status"] == "success":
        successes.append(landed[-1][1])
    everything = [f"message {n}" for n in range(sent)]
    assert sorted({m for _, messages in landed for m in messages}) == sorted(everything), f"seed {seed}"
    committed = [m for messages in successes for m in messages]
    assert len(committed) == len(set(committed)), f"a message was in two delivered exports (seed {seed})"
    assert set(committed) == set(everything), "after a clean run, every message is in a committed export"


def test_exports_in_the_same_second_never_replace_each_other(feeds, monkeypatch):
    """The name had a one-second stamp and the rename replaced: two exports in one second (two
    feeds on one folder, or one feed run twice) left one file, and the other export was lost."""
    import datetime

    from daemon.exports import runs

    frozen = datetime.datetime(2026, 12, 4, 5, 0, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(runs, "utc_now", lambda: frozen)
    start(feeds, conversations_feed(count_file="write"),
          conversations_feed(name="conversations-web", channels=["web"], count_file="write"))  # fmt: skip
    log_messages(feeds, "messages_1.csv", message(1), message(2))
    first = feeds.export("conversations")
    second = feeds.export("conversations-web")
    log_messages(feeds, "messages_2.csv", message(3))
    third = feeds.export("conversations")
    names = [run["file"] for run in (first, second, third)]
    assert names == ["conversations_20261204T050000Z.csv", "conversations_20261204T050000Z_2.csv",
                     "conversations_20261204T050000Z_3.csv"]  # fmt: skip
    assert outbox(feeds) == sorted([*names, *(name.removesuffix(".csv") + "_count.txt" for name in names)])
    assert [len(exported(feeds, name)) for name in names] == [2, 2, 1]
    assert (feeds.home("northfield") / "outbox" / "conversations_20261204T050000Z_3_count.txt").read_text() == "1\n"


def test_a_message_keeps_its_contact_when_the_contacts_id_changes(feeds):
    """A conversations row joined on the mutable contact_id: after a CRM match re-keyed the
    contact, its messages came out with a blank crm_id and admithub_id."""
    start(feeds, conversations_feed())  # contact S1, CRM-1
    log_messages(feeds, "messages_1.csv", message(1), message(2))
    feeds.upload(
        "northfield",
        "/imports/StudentData_2.csv",
        f"{CONTACTS_HEADER}\nS1-new,Ada,Lovelace,202-555-0143,,CRM-1,,\n".encode(),
    )
    assert set(feeds.contacts("northfield")) == {"S1-new"}, "the CRM match re-keyed the contact"
    run = feeds.export("conversations")
    assert run["status"] == "success" and run["rows_in_file"] == 2 and run["reason"] is None
    rows = exported(feeds, run["file"])
    assert {(row["crm_id"], row["first_name"]) for row in rows} == {("CRM-1", "Ada")}
    assert len({row["admithub_id"] for row in rows}) == 1 and rows[0]["admithub_id"]


def contacts_export_feed(**overrides) -> dict:
    return {"name": "contacts-out", "kind": "contacts_export", "prefix": "contacts", "schedule": [], **overrides}


def test_the_contacts_export_sends_the_changed_contacts_with_every_field(feeds):
    """Seed 000: a contacts export with every field and the partner's custom fields by name."""
    start(feeds, contacts_export_feed())  # contact S1, CRM-1, Major custom field
    feeds.upload(
        "northfield", "/imports/StudentData_2.csv",
        f"{CONTACTS_HEADER}\nS2,Alan,Turing,202-555-0144,alan@example.org,CRM-2,Y,Logic\n".encode(),
    )  # fmt: skip
    first = feeds.export("contacts-out")
    assert first["status"] == "success" and first["rows_in_file"] == 2
    with open(feeds.home("northfield") / "outbox" / first["file"], encoding="utf-8") as handle:
        assert handle.readline().strip() == (
            "crm_id,admithub_id,first_name,last_name,preferred_name,mobile_number,email,language,messaging_status_sms,"
            "messaging_status_web_bot,opted_out,created,updated,Major"
        )
    rows = {row["crm_id"]: row for row in exported(feeds, first["file"])}
    alan = rows["CRM-2"]
    assert (alan["first_name"], alan["mobile_number"], alan["email"], alan["opted_out"], alan["Major"]) == (
        "Alan", "+12025550144", "alan@example.org", "true", "Logic",
    )  # fmt: skip
    assert alan["admithub_id"] and alan["created"].endswith("Z") and alan["updated"].endswith("Z")

    assert feeds.export("contacts-out")["status"] == "skipped", "nothing changed since"
    feeds.upload(
        "northfield",
        "/imports/StudentData_3.csv",
        f"{CONTACTS_HEADER}\nS2,Alan,Turing,202-555-0144,,CRM-2,Y,Maths\n".encode(),
    )
    second = feeds.export("contacts-out")
    assert [(row["crm_id"], row["Major"]) for row in exported(feeds, second["file"])] == [("CRM-2", "Maths")]


def test_a_full_contacts_export_sends_every_contact_each_time(feeds):
    start(feeds, contacts_export_feed(full=True))
    assert feeds.export("contacts-out")["rows_in_file"] == 1
    assert feeds.export("contacts-out")["rows_in_file"] == 1


def test_the_notes_export_writes_a_note_per_contact_and_day(feeds):
    """Seed 000's "EAB Notes": a contact's messages of one day in one note, in order."""
    notes = {"name": "notes", "kind": "notes_export", "prefix": "notes", "schedule": [], "max_body": 200}
    start(feeds, notes)  # contact S1, CRM-1; the daemon's zone is America/New_York
    rows = (
        "S1,web,2026-11-21T14:05:00Z,Hi there,,,,,,,,n1\n"
        "S1,web,2026-11-21T14:06:00Z,,Hello! How can I help?,AI,,,,,,n2\n"
        "S1,twilio,2026-11-22T03:00:00Z,late night,,,,,,,,n3\n"  # 22:00 on the 21st in New York
        "S1,web,2026-11-23T15:00:00Z,next day,,,,,,,,n4\n"
        "nobody,web,2026-11-23T15:01:00Z,who?,,,,,,,,n5\n"
    )
    feeds.upload("northfield", "/log/messages_1.csv", (MESSAGES_HEADER + "\n" + rows).encode())
    run = feeds.export("notes")
    assert run["status"] == "success" and run["rows_in_file"] == 2 and run["details"]["unknown_contact"] == 1
    first, second = exported(feeds, run["file"])
    assert (first["crm_id"], first["note_date"], first["subject"]) == ("CRM-1", "2026-11-21", "Text conversation")
    assert (
        first["body"] == "09:05 incoming: Hi there\n09:06 outgoing: Hello! How can I help?\n22:00 incoming: late night"
    )
    assert (second["note_date"], second["body"]) == ("2026-11-23", "10:00 incoming: next day")
    chatty = "".join(f"S1,web,2026-11-24T15:{n:02d}:00Z,message number {n} of the day,,,,,,,,c{n}\n" for n in range(20))
    feeds.upload("northfield", "/log/messages_2.csv", (MESSAGES_HEADER + "\n" + chatty).encode())
    [long] = exported(feeds, feeds.export("notes")["file"])
    lines = long["body"].split("\n")
    assert len(long["body"]) <= 200 + 30 and lines[-1] == f"… ({20 - len(lines) + 1} more messages)"
    assert lines[0] == "10:00 incoming: message number 0 of the day"


def test_a_delivered_file_waits_for_the_store_to_record_it():
    """After a file is delivered, its record is tried again while the store is away (5 s,
    doubling to a minute, an hour at most), rather than have the feed run again and deliver
    the same rows twice; past the hour the outage is raised for the runner."""
    import structlog

    from daemon.exports import runs
    from daemon.store.records import StoreUnavailable

    calls, waits = [], []

    def flaky(failures):
        def record():
            calls.append(1)
            if len(calls) <= failures:
                raise StoreUnavailable("the PostgreSQL store cannot be reached: connection refused")

        return record

    runs._until_recorded(flaky(3), structlog.get_logger(), waits.append)
    assert len(calls) == 4 and waits == [5.0, 10.0, 20.0]
    calls.clear(), waits.clear()
    with pytest.raises(StoreUnavailable):
        runs._until_recorded(flaky(10_000), structlog.get_logger(), waits.append)
    assert sum(waits) >= runs.RECORD_PATIENCE and max(waits) == 60.0
