"""The batched imports leave exactly what the row-at-a-time imports left (tests/handlers/reference/).

Two stores get the same sequence of generated files: one through the kind as dropd runs it,
one through the row-at-a-time kind of commit bb3851f. After every file the runs' outcomes and
counts, the error files (byte for byte) and the stores' contents must be equal. The files are
drawn from small pools of IDs, phones and emails, so rows collide with each other inside a
batch, across batches and across files, and every error code of the kind occurs; batches are
made small so that each file spans many of them.
"""

import random
from pathlib import Path

import pytest

import handlers
from handlers import base
from tests.handlers.reference.activity import ReferenceActivityImport
from tests.handlers.reference.contacts import ReferenceContactsImport
from tests.handlers.reference.subscribers import ReferenceSubscribersImport
from tests.helpers import InProcessFeeds, students_feed

CONTACT_HEADER = ["Student ID", "First Name", "Last Name", "Cell", "Email", "CRM", "Text Opt Out", "Major"]


PHONES = [f"(202) 555-{n:04d}" for n in range(100, 130)] + [f"+1 303 555 {n:04d}" for n in range(100, 110)]


def contact_row(rng: random.Random) -> list[str]:
    """Mostly contact n with its own phone and CRM ID; sometimes a value from a small pool, so
    keys collide and move, and every error code occurs now and then."""
    n = rng.randrange(40)
    odd = lambda *options: rng.choice(options)  # noqa: E731
    usual = lambda value, *others: value if rng.random() < 0.85 else odd(*others)  # noqa: E731
    return [
        usual(str(n), *[str(k) for k in range(40)], "", " 7 ", "UNSET"),
        usual(odd("Ada", "Grace"), "", "UNSET", "=cmd", "Alan"),
        odd("Lovelace", "Hopper", "Turing"),
        usual(PHONES[n], *PHONES, "12", "555-0143", "+44 20 7946 0958", "UNSET", ""),
        usual(f"s{n}@example.edu", "grace@EXAMPLE.edu", "bad@@example", "", "UNSET"),
        usual(f"CRM{n}" if n % 4 else "", *[f"CRM{k}" for k in range(40)], "", "UNSET"),
        odd("N", "Y", "No", "Yes", "", "Maybe"),
        usual(odd("History", "Biology"), "", "UNSET", "x" * 1001),
    ]


def contact_file(rng: random.Random, rows: int) -> str:
    lines = [",".join(CONTACT_HEADER)]
    for _ in range(rows):
        roll = rng.random()
        if roll < 0.03:
            lines.append("1,A,B,(202) 555-0100,,,,,extra")  # malformed-row: too many cells
        elif roll < 0.05:
            lines.append('2,A,"B"x,(202) 555-0100,,,,')  # malformed-row: a stray quote
        else:
            lines.append(",".join(contact_row(rng)))
    return "\n".join(lines) + "\n"


def outcome(feeds: InProcessFeeds, feed: str, store: dict) -> dict:
    """The feed's last run (its counts and error file) and `store`: what the store holds."""
    run = feeds.runs("--feed", feed)[0]
    errors = Path(run["error_file"]).read_bytes() if run["error_file"] else None
    facts = {name: run[name] for name in ("status", "reason", "rows_in_file", "rows_applied", "rows_rejected")}
    return {"run": facts, "details": run["details"], "errors": errors, **store}


def without_times(record: dict) -> dict:
    return {name: value for name, value in record.items() if name not in ("created_at", "updated_at")}


def contacts_held(feeds: InProcessFeeds) -> dict:
    return {"contacts": {key: without_times(contact) for key, contact in feeds.contacts("northfield").items()}}


def compare_imports(batched, reference, monkeypatch, kind, reference_kind, partner, files, held) -> set:
    """Upload each (name, text) of `files` to both stores, through today's kind and through
    `reference_kind`; after each, the runs and `held(feeds)` must be equal. Returns the error
    codes the files produced."""
    codes = set()
    for number, (path, text) in enumerate(files):
        batched.upload(partner, path, text.encode())
        with monkeypatch.context() as patch:
            patch.setitem(handlers.KINDS, kind, reference_kind)
            reference.upload(partner, path, text.encode())
        [name] = [feed.name for feed in batched.config.partners[partner].feeds if feed.kind == kind]
        got, expected = outcome(batched, name, held(batched)), outcome(reference, name, held(reference))
        assert got == expected, f"file {number}"
        codes |= {line.split(b",")[1] for line in (expected["errors"] or b"").splitlines()[1:]}
    return codes


@pytest.fixture
def two_stores(tmp_path, password_hash, request, feeds_on_each_store):
    """The store under test (`feeds_on_each_store`) and a reference store on the same backend."""
    reference = InProcessFeeds(tmp_path / "reference", password_hash)
    backend = feeds_on_each_store.settings["daemon"].get("store")
    if backend:
        reference.use_postgresql(request.getfixturevalue("postgresql"))
    yield feeds_on_each_store, reference
    reference.stop()


def start_students_feeds(two_stores) -> tuple:
    """Both stores with the students feed."""
    for feeds in two_stores:
        feeds.add_feed_partner("northfield", [students_feed()])
        feeds.start()
    return two_stores


@pytest.mark.parametrize("batch", [7, base.BATCH])
def test_contacts_match_the_row_at_a_time_import(two_stores, monkeypatch, batch):
    batched, reference = start_students_feeds(two_stores)
    monkeypatch.setattr(base, "BATCH", batch)
    rng = random.Random(batch)
    files = [(f"/imports/StudentData_{n}.csv", contact_file(rng, rows=120 if batch == 7 else 2500)) for n in range(6)]
    codes = compare_imports(
        batched, reference, monkeypatch, "contacts", ReferenceContactsImport, "northfield", files, contacts_held
    )
    assert codes >= {
        b"missing-value", b"invalid-phone", b"invalid-email", b"invalid-messaging-status",
        b"custom-values-too-long", b"malformed-row", b"duplicate-contact",
        b"phone-match-found-but-crmId-mismatch", b"contactId-match-found-but-crmId-mismatch",
    }  # fmt: skip


AREAS = (201, 202, 203, 205, 206, 212, 213, 214, 215, 216)


def new_contact_row(n: int) -> list[str]:
    """Contact n, new to the store, in the common shape (what `take_batch` applies at once)."""
    area, exchange, line = AREAS[n % 10], 234 + (n // 10) % 600, (n // 6000) % 10000
    phone = (f"({area}) {exchange}-{line:04d}", f"{area}-{exchange}-{line:04d}", f"+1 {area} {exchange} {line:04d}")
    return [str(n), "Ada", "Lovelace", phone[n % 3], f"s{n}@example.edu" if n % 5 else "", f"CRM{n}" if n % 4 else "",
            ("N", "Y", "")[n % 3], ("History", "Biology", "")[n % 3]]  # fmt: skip


def clean_contact_file(rng: random.Random, rows: int, start: int, odd: float) -> str:
    """Mostly new contacts; each row with odds `odd` one `take_batch` must leave to the rows: a
    contact, phone or CRM ID seen before (in this batch, file or an earlier one), UNSET, an
    invalid or unusual phone or email, an unknown opt-out value, a long custom value, a
    missing name, spaces around a cell."""
    lines = [",".join(CONTACT_HEADER)]
    for n in range(start, start + rows):
        lines.append(spoiled(rng, new_contact_row(n), odd, contact_oddities, n))
    return "\n".join(lines) + "\n"


def contact_oddities(rng: random.Random, n: int) -> list[tuple]:
    earlier = new_contact_row(rng.randrange(max(n, 1)))
    return [
        (0, earlier[0]), (3, earlier[3]), (5, f"CRM{rng.randrange(max(n, 1))}"), (1, "UNSET"), (3, "12"),
        (3, "+44 20 7946 0958"), (4, "bad@@example"), (4, f"s{n}@EXAMPLE.edu"), (4, "postmaster@example.edu"),
        (6, "Maybe"), (7, "x" * 1001), (2, ""), (0, f" {n} "), (3, "(202) 555 0143"),
    ]  # fmt: skip


def spoiled(rng: random.Random, row: list[str], odd: float, oddities, *args) -> str:
    """`row` as a CSV line; with odds `odd`, one cell replaced as one of `oddities(rng, *args)`
    says (column, value)."""
    if rng.random() < odd:
        column, value = rng.choice(oddities(rng, *args))
        row[column] = value
    return ",".join(row)


def contacts_stored(feeds: InProcessFeeds) -> dict:
    """`contacts_held`, and what each row holds, in the order the contacts were written (the
    order of their store keys, not the keys' values: a PostgreSQL sequence skips those a batch
    turned down for a taken key had drawn)."""
    with feeds.store.reading() as tx:
        rows = tx.contacts._all(
            "SELECT contact_id, crm_id, mobile_number, email, staff_id, opted_out, custom, source_hash "
            "FROM contacts ORDER BY id"
        )
    return {**contacts_held(feeds), "stored": [tuple(row) for row in rows]}


@pytest.mark.parametrize("batch", [7, base.BATCH])
def test_contacts_applied_a_batch_at_once_match_the_row_at_a_time_import(two_stores, monkeypatch, batch):
    batched, reference = start_students_feeds(two_stores)
    monkeypatch.setattr(base, "BATCH", batch)
    rng = random.Random(batch)
    rows, odd = (300, 0.03) if batch == 7 else (4500, 0.0003)  # a batch is often clean
    files = [(f"/imports/StudentData_{n}.csv", clean_contact_file(rng, rows, n * rows // 2, odd)) for n in range(4)]
    taken, returned = [], []
    kind = handlers.contacts.ContactsImport
    take, give_back = kind.take_batch, kind.returned_batch
    monkeypatch.setattr(kind, "take_batch", lambda self, *args: taken.append(take(self, *args)) or taken[-1])
    monkeypatch.setattr(kind, "returned_batch", lambda self, *a: returned.append(give_back(self, *a)) or returned[-1])
    codes = compare_imports(
        batched, reference, monkeypatch, "contacts", ReferenceContactsImport, "northfield", files, contacts_stored
    )
    assert batch != 7 or codes >= {b"missing-value", b"invalid-phone", b"invalid-email"}
    assert taken.count(True) >= 3 and False in taken  # both ways were taken
    if batch == 7 and "store" not in batched.settings["daemon"]:
        # SQLite lets its unique indexes find a stored key: some batches came back.
        assert any(batch is not None for batch in returned)


SUBSCRIBER_HEADER = ["Email", "First", "Last", "Segment"]


def subscriber_file(rng: random.Random, rows: int) -> str:
    """Emails from a small pool in changing case, so rows collide, change, leave and come back."""
    lines = [",".join(SUBSCRIBER_HEADER)]
    for _ in range(rows):
        roll = rng.random()
        if roll < 0.03:
            lines.append("a@example.org,A,B,S1,extra")  # malformed-row
            continue
        n = rng.randrange(60)
        email = rng.choice([f"m{n}@example.org", f"M{n}@Example.org", "", "UNSET", "bad@@example", "x@[1.2.3.4]"])
        if rng.random() < 0.9:
            email = f"m{n}@example.org"
        cells = [
            email,
            rng.choice(["Ada", "", "UNSET", "Grace"]),
            rng.choice(["L", "H", ""]),
            rng.choice(["S1", "S2", ""]),
        ]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def list_held(feeds: InProcessFeeds) -> dict:
    with feeds.store.reading() as tx:
        listing = tx.subscribers.listing("assoc", include_removed=True)
    return {"members": [{**without_times(row), "removed_at": row["removed_at"] is not None} for row in listing]}


@pytest.mark.parametrize("mode", ["full_replace", "incremental"])
@pytest.mark.parametrize("batch", [5, base.BATCH])
def test_subscribers_match_the_row_at_a_time_import(two_stores, monkeypatch, batch, mode):
    batched, reference = two_stores
    feed = {"name": "newsletter", "kind": "subscribers", "path": "/lists", "prefix": "list", "files": "all",
            "schedule": ["on_arrival"], "mode": mode, "max_removal": "90%",
            "columns": {"email": "Email", "first_name": "First", "last_name": "Last", "segment_code": "Segment"}}  # fmt: skip
    for feeds in (batched, reference):
        feeds.add_feed_partner("assoc", [feed])
        feeds.start()
    monkeypatch.setattr(base, "BATCH", batch)
    rng = random.Random(batch)
    sizes = [rng.choice([10, 80, 150]) if batch == 5 else 2500 for _ in range(6)]
    files = [(f"/lists/list_{n}.csv", subscriber_file(rng, rows=size)) for n, size in enumerate(sizes)]
    codes = compare_imports(
        batched, reference, monkeypatch, "subscribers", ReferenceSubscribersImport, "assoc", files, list_held
    )
    assert codes >= {b"missing-value", b"invalid-email", b"malformed-row"}


ACTIVITY_HEADER = ["cID", "_id", "mcID", "message_name", "message_sent", "action", "time", "first"]


def activity_file(rng: random.Random, rows: int) -> str:
    """Event ids from a small pool (re-sent events, duplicates in one file), opt-outs of known
    contacts, bad and old dates, missing ids."""
    lines = [",".join(ACTIVITY_HEADER)]
    for _ in range(rows):
        if rng.random() < 0.03:
            lines.append("1,ev1,m,Issue,2026-01-01,open,2026-01-01")  # malformed-row
            continue
        when = rng.choice(["2026-11-26T10:00:00Z", "2026-11-25 08:00", "2020-01-01T00:00:00Z", "yesterday", ""])
        if rng.random() < 0.8:
            when = f"2026-11-2{rng.randrange(3, 7)}T{rng.randrange(24):02d}:00:00Z"
        lines.append(",".join([
            rng.choice([str(rng.randrange(12)), "", "UNSET"]) if rng.random() < 0.1 else str(rng.randrange(12)),
            rng.choice(["", " "]) if rng.random() < 0.03 else f"ev{rng.randrange(150)}",
            f"mc{rng.randrange(5)}", rng.choice(["Issue 1", ""]),
            rng.choice(["2026-11-25T09:00:00Z", "", "not a date"]),
            rng.choice(["open", "click", "opt-out", "OPT-OUT", "message-sent", ""]),
            when, rng.choice(["true", "false", "maybe", ""]),
        ]))  # fmt: skip
    return "\n".join(lines) + "\n"


def clean_activity_file(rng: random.Random, rows: int, start: int, odd: float) -> str:
    """Mostly new events in the common shape (what `take_batch` applies at once), now and then
    one it must leave to the rows: sent again, repeated in the file, too old, an opt-out, a
    cell with spaces around it or one JSON escapes, another way to write a time or a boolean
    (each row with odds `odd`)."""
    lines = [",".join(ACTIVITY_HEADER)]
    for n in range(start, start + rows):
        when = f"2026-11-2{rng.randrange(3, 7)}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z"
        row = [str(rng.randrange(12)), f"ev{n}", f"mc{rng.randrange(5)}", rng.choice(["Issue 1", "50% off", "Q&A"]),
               when, rng.choice(["open", "Click", "message-sent"]), when, rng.choice(["true", "False", "1", "no"])]  # fmt: skip
        lines.append(spoiled(rng, row, odd, event_oddities, n, start))
    return "\n".join(lines) + "\n"


def event_oddities(rng: random.Random, n: int, start: int) -> list[tuple]:
    return [
        (1, f"ev{rng.randrange(max(start, 1))}"), (1, f"ev{n - 1}"), (6, "2020-01-01T00:00:00Z"),
        (5, "OPT-OUT"), (3, " Issue 2 "), (3, "Café"), (3, "back\\slash"), (3, "tab\there"),
        (4, "2026-11-25 08:00"), (4, "2026-02-30T00:00:00Z"), (7, "maybe"), (2, ""), (0, " 3"), (0, ""),
    ]  # fmt: skip


def activity_held(feeds: InProcessFeeds) -> dict:
    with feeds.store.reading() as tx:
        events = tx.events.listing("northfield")
        # The JSON text itself, and the order the events were written in.
        stored = [tuple(row) for row in tx.events._all("SELECT event_id, fields FROM events ORDER BY id")]
    opted_out = {key: contact["opted_out"] for key, contact in feeds.contacts("northfield").items()}
    return {"events": events, "stored": stored, "opted_out": opted_out}


def start_events_feeds(two_stores) -> tuple:
    """Both stores with an events feed beside the students feed, and twelve contacts."""
    events = {"name": "events", "kind": "activity", "path": "/activity", "prefix": "activity", "files": "all",
              "schedule": ["on_arrival"], "import_since": "2026-11-01"}  # fmt: skip
    contacts = "".join(f"{n},A,B,(202) 555-{100 + n:04d},,,N,\n" for n in range(12))
    for feeds in two_stores:
        feeds.add_feed_partner("northfield", [students_feed(), events])
        feeds.start()
        feeds.upload("northfield", "/imports/StudentData.csv", (",".join(CONTACT_HEADER) + "\n" + contacts).encode())
    return two_stores


@pytest.mark.parametrize("batch", [6, base.BATCH])
def test_activity_matches_the_row_at_a_time_import(two_stores, monkeypatch, batch):
    batched, reference = start_events_feeds(two_stores)
    monkeypatch.setattr(base, "BATCH", batch)
    rng = random.Random(batch)
    files = [(f"/activity/activity_{n}.csv", activity_file(rng, rows=100 if batch == 6 else 2500)) for n in range(5)]
    codes = compare_imports(
        batched, reference, monkeypatch, "activity", ReferenceActivityImport, "northfield", files, activity_held
    )
    assert codes >= {b"missing-value", b"invalid-attribute-data", b"malformed-row"}


@pytest.mark.parametrize("batch", [7, base.BATCH])
def test_activity_applied_a_batch_at_once_matches_the_row_at_a_time_import(two_stores, monkeypatch, batch):
    batched, reference = start_events_feeds(two_stores)
    monkeypatch.setattr(base, "BATCH", batch)
    rng = random.Random(batch)
    rows = 400 if batch == 7 else 4500
    odd = 0.04 if batch == 7 else 0.0015  # a batch of 7 or of 2000 is often clean
    files = [(f"/activity/activity_{n}.csv", clean_activity_file(rng, rows, n * rows, odd)) for n in range(4)]
    taken = []
    original = handlers.activity.ActivityImport.take_batch
    monkeypatch.setattr(
        handlers.activity.ActivityImport,
        "take_batch",
        lambda self, *args: taken.append(original(self, *args)) or taken[-1],
    )
    codes = compare_imports(
        batched, reference, monkeypatch, "activity", ReferenceActivityImport, "northfield", files, activity_held
    )
    assert codes >= {b"missing-value", b"invalid-attribute-data"}
    assert taken.count(True) >= 3 and taken.count(False) >= 3  # both ways were taken
