"""Message-log imports through the running daemon."""

import csv
import json

HEADER = "contact_id,channel,timestamp,incoming,outgoing,outgoing_source,campaign_id,campaign_name,script_id,script_name,media"


def test_messages_are_stored_and_deduplicated(dropd):
    dropd.add_feed_partner(
        "northfield",
        [
            {
                "name": "log",
                "kind": "messages",
                "path": "/log",
                "prefix": "messages",
                "files": "all",
                "schedule": ["on_arrival"],
            }
        ],
    )
    dropd.start()
    text = (
        f"{HEADER}\n"
        "c1,twilio,2026-11-20T10:00:00Z,Hi there,,,,,,,\n"
        "c1,web,2026-11-20T10:01:00Z,,Hello! How can I help?,AI,cmp1,Fall,s1,Intro,https://x.org/a.png\n"
        "c2,fax,2026-11-20T10:02:00Z,Hi,,,,,,,\n"
        "c2,web,2026-11-20T10:03:00Z,,Reply,Robot,,,,,\n"
        "c3,web,2026-11-20T10:04:00Z,,,,,,,,\n"
    )
    dropd.upload("northfield", "/log/messages_1.csv", text.encode())
    [run] = dropd.wait_for_runs("log")
    # c2's "Robot" source is stored as Other with a partial error: one partial row.
    assert (run["rows_applied"], run["rows_rejected"], run["details"]["partial"]) == (3, 2, 1)
    stored = json.loads(dropd.cli("messages", "--partner", "northfield", "--json").stdout)
    assert [(m["contact_id"], m["direction"], m["outgoing_source"]) for m in stored] == [
        ("c1", "incoming", None),
        ("c1", "outgoing", "AI"),
        ("c2", "outgoing", "Other"),
    ]
    dropd.upload("northfield", "/log/messages_2.csv", (text + "c4,web,2026-11-21T08:00:00Z,New,,,,,,,\n").encode())
    second = dropd.wait_for_runs("log", 2)[-1]
    assert (second["details"]["created"], second["details"]["unchanged"]) == (1, 3)


def test_an_outgoing_message_without_a_source_says_so_in_words(dropd):
    """It read `outgoing_source None is not one of: ...`."""
    dropd.add_feed_partner(
        "northfield",
        [{"name": "log", "kind": "messages", "path": "/log", "prefix": "messages", "files": "all",
          "schedule": ["on_arrival"]}],
    )  # fmt: skip
    dropd.start()
    text = f"{HEADER}\nc1,web,2026-11-20T10:01:00Z,,Hello,,,,,,\nc1,web,2026-11-20T10:02:00Z,,Again,Robot,,,,,\n"
    dropd.upload("northfield", "/log/messages_1.csv", text.encode())
    [run] = dropd.wait_for_runs("log")
    with open(run["error_file"], encoding="utf-8-sig", newline="") as handle:
        messages = [error["message"] for error in csv.DictReader(handle)]
    sources = "AI, Live Chat, Campaign Script, Other"
    assert [message.split(f": {sources}; stored as Other")[0] for message in messages] == [
        "outgoing_source is empty, not one of",
        'outgoing_source "Robot" is not one of',
    ]
