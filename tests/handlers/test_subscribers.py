"""Subscriber lists (in-process against the store): full replacement, incremental, the
mass-removal stop, and count files guarding the list."""

import json
import os
from pathlib import Path

import pytest

HEADER = "Email,First,Last,Segment"


def list_feed(**overrides):
    feed = {
        "name": "newsletter",
        "kind": "subscribers",
        "path": "/lists",
        "prefix": "subscriber_list",
        "files": "all",
        "schedule": ["on_arrival"],
        "mode": "full_replace",
        "count_file": "optional",
        "columns": {"email": "Email", "first_name": "First", "last_name": "Last", "segment_code": "Segment"},
    }
    feed.update(overrides)
    return feed


def members(dropd, include_removed=False) -> dict:
    args = ["subscribers", "--partner", "assoc", "--json"] + (["--all"] if include_removed else [])
    return {row["email"]: row for row in json.loads(dropd.cli(*args).stdout)}


def drop(dropd, name, text, count=None):
    before = len(dropd.runs("--feed", "newsletter"))
    if count is not None:
        dropd.upload("assoc", f"/lists/{name.rsplit('.', 1)[0]}_count.txt", f"{count}\n".encode())
    dropd.upload("assoc", f"/lists/{name}", text.encode())
    return dropd.wait_for_runs("newsletter", before + 1)[-1]


def rows(*emails):
    return HEADER + "\n" + "".join(f"{email},F,L,S1\n" for email in emails)


@pytest.fixture
def association(dropd):
    dropd.add_feed_partner("assoc", [list_feed()])
    dropd.start()
    return dropd


def test_full_replace_removes_the_absent_and_keeps_them_on_record(association):
    drop(association, "subscriber_list_1.csv", rows("a@x.org", "b@x.org", "c@x.org"))
    run = drop(association, "subscriber_list_2.csv", rows("A@X.org", "b@x.org", "d@x.org"))
    assert run["status"] == "success" and run["details"]["removed"] == 1
    assert set(members(association)) == {"a@x.org", "b@x.org", "d@x.org"}
    everyone = members(association, include_removed=True)
    assert everyone["c@x.org"]["removed_at"] is not None


def test_a_removed_subscriber_who_comes_back_is_active_again(association):
    drop(association, "subscriber_list_1.csv", rows("a@x.org", "b@x.org"))
    drop(association, "subscriber_list_2.csv", rows("a@x.org"))
    # (not byte-identical to the first list, which would be skipped as a duplicate)
    drop(association, "subscriber_list_3.csv", rows("b@x.org", "a@x.org"))
    assert set(members(association)) == {"a@x.org", "b@x.org"}


def test_incremental_only_adds_and_updates(dropd):
    dropd.add_feed_partner("assoc", [list_feed(mode="incremental")])
    dropd.start()
    drop(dropd, "subscriber_list_1.csv", rows("a@x.org", "b@x.org"))
    drop(dropd, "subscriber_list_2.csv", HEADER + "\nb@x.org,Bea,,S2\nc@x.org,,,\n")
    now = members(dropd)
    assert set(now) == {"a@x.org", "b@x.org", "c@x.org"}
    assert (now["b@x.org"]["first_name"], now["b@x.org"]["segment_code"]) == ("Bea", "S2")


def test_mass_removal_is_voided_and_the_list_stands(association):
    drop(association, "subscriber_list_1.csv", rows(*(f"m{i}@x.org" for i in range(10))))
    run = drop(association, "subscriber_list_2.csv", rows("m0@x.org", "m1@x.org", "m2@x.org", "m3@x.org"))
    assert run["status"] == "failed"
    assert run["reason"] == (
        "mass-removal: the file would remove 6 of 10 subscribers (60%), more than max_removal (50%); nothing was applied"
    )
    assert len(members(association)) == 10
    assert (
        len([n for n in os.listdir(association.home("assoc") / "lists" / "failed") if not n.endswith(".errors.csv")])
        == 1
    )


def test_max_removal_can_be_raised(dropd):
    dropd.add_feed_partner("assoc", [list_feed(max_removal="80%")])
    dropd.start()
    drop(dropd, "subscriber_list_1.csv", rows(*(f"m{i}@x.org" for i in range(10))))
    run = drop(dropd, "subscriber_list_2.csv", rows("m0@x.org", "m1@x.org", "m2@x.org", "m3@x.org"))
    assert run["status"] == "success" and len(members(dropd)) == 4


def test_count_mismatch_leaves_the_last_good_list(association):
    drop(association, "subscriber_list_1.csv", rows("a@x.org", "b@x.org"), count=2)
    run = drop(association, "subscriber_list_2.csv", rows("a@x.org"), count=5)
    assert run["status"] == "failed" and run["reason"] == "count-mismatch: the count file said 5 rows, the file has 1"
    assert set(members(association)) == {"a@x.org", "b@x.org"}


def test_bad_rows_are_rejected_with_their_codes(association):
    run = drop(association, "subscriber_list_1.csv", HEADER + "\nok@x.org,,,\nnot-an-email,,,\n,No,Email,\n")
    assert (run["rows_applied"], run["rows_rejected"]) == (1, 2)
    codes = [line.split(",")[1] for line in Path(run["error_file"]).read_text(encoding="utf-8-sig").splitlines()[1:]]
    assert codes == ["invalid-email", "missing-value"]


def test_missing_email_column_rejects_the_file(association):
    run = drop(association, "subscriber_list_1.csv", "Mail,First\na@x.org,A\n")
    assert (
        run["status"] == "failed"
        and run["reason"] == "missing-column: required column 'Email' (email) is not in the header"
    )


def test_a_subscriber_import_keeps_the_contacts_reimport_shortcut(dropd, tmp_path):
    """Only runs that change contacts may turn off the contacts feed's unchanged-record shortcut."""
    from daemon.feeds.runs import import_file
    from daemon.runs.lifecycle import RunContext
    from tests.helpers import CONTACTS_HEADER, students_feed

    dropd.add_feed_partner(
        "northfield", [students_feed(), {"name": "list", "kind": "subscribers", "path": "/lists", "prefix": "subs"}]
    )
    dropd.start()
    context = RunContext(dropd.store, dropd.config)
    contacts = tmp_path / "StudentData.csv"
    contacts.write_text(f"{CONTACTS_HEADER}\n1,Ada,Lovelace,202-555-0143,,,,\n")
    subscribers = tmp_path / "subs.csv"
    subscribers.write_text("email\nnew@example.org\n")
    for feed_name, path in (("students", contacts), ("list", subscribers)):
        partner, feed = dropd.config.feed(feed_name)
        assert import_file(context, partner, feed, path, "ingest", manual=True).status == "success"
    with dropd.store.reading() as tx:
        assert tx.row_digests.previous("students", "northfield", tx.contacts.version("northfield")) is not None
