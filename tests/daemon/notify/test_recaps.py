"""Run recaps through a real SMTP server (aiosmtpd, read back from its Maildir): who gets one,
what it says, the error file attached (zipped or cut when large), TLS, AUTH, refusals."""

import csv
import io
import json
import zipfile

import pytest

from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import MESSAGES_HEADER, InProcessFeeds, SmtpSink, conversations_feed, messages_feed, students_feed

GOOD = "1,Ada,Lovelace,202-555-0143,ada@example.org,C1,N,Maths\n"
BAD_PHONE = "2,Alan,Turing,not a phone,,C2,,Logic\n"


@pytest.fixture
def feeds(tmp_path, password_hash):
    return InProcessFeeds(tmp_path, password_hash)


def start(feeds, sink, smtp=None, partner=None, **feed):
    feeds.settings["smtp"] = sink.settings(**(smtp or {}))
    feed.setdefault("notify", ["registrar@northfield.example"])
    feeds.add_feed_partner("northfield", [students_feed(**feed)], **(partner or {}))
    feeds.start()


def drop(feeds, name, text) -> dict | None:
    """Upload a file; the feed's newest run (None while only a count file came)."""
    feeds.upload("northfield", f"/imports/{name}", text.encode())
    runs = feeds.runs("--feed", "students")
    return runs[0] if runs else None


def attachments(message) -> list:
    return [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    ]


def test_a_success_recap_goes_to_notify_with_counts_and_nothing_else(feeds, sink):
    start(feeds, sink)
    run = drop(feeds, "StudentData_1.csv", HEADER + "\n" + GOOD)
    assert feeds.deliver_mail() == 1
    [message] = sink.wait_for(1)
    assert message["Subject"] == "[dropd] students: success, 1 imported"
    assert message["To"] == "registrar@northfield.example" and message["X-RcptTo"] == "registrar@northfield.example"
    assert message["Message-ID"].startswith(f"<dropd.run-{run['id']}.students.partner.")
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",)).get_content()
    assert text.startswith(
        "students: success\n\n1 of 1 row applied from StudentData_1.csv: 1 created, 0 updated, 0 unchanged; 0 rejected.\n"
    )
    assert "Rows in file:" in text and "Duration:" in text and "Trigger:" not in text, "the trigger is admin's"
    assert "<table>" in message.get_body(("html",)).get_content()
    for partner_data in ("Lovelace", "202-555-0143", "ada@example.org"):
        assert partner_data not in message.as_string()
    assert attachments(message) == []
    assert feeds.deliver_mail() == 0, "a sent message is not sent again"


def test_rejected_rows_are_attached_exactly_as_the_runs_error_file(feeds, sink):
    start(feeds, sink)
    run = drop(feeds, "StudentData_2.csv", HEADER + "\n" + GOOD + BAD_PHONE + "3,,Hopper,202-555-0101,,,,\n")
    feeds.deliver_mail()
    [message] = sink.wait_for(1)
    assert message["Subject"] == "[dropd] students: success, 1 imported, 2 rejected"
    [(name, kind, data)] = attachments(message)
    assert name == f"run-{run['id']}-students-errors.csv" and kind == "text/csv"
    with open(run["error_file"], "rb") as handle:
        assert data == handle.read()
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [(row["row"], row["code"]) for row in rows] == [("3", "invalid-phone"), ("4", "missing-value")]


def test_errors_are_summed_by_code_before_any_detail(feeds, sink):
    bad_phones = "".join(f"{n},Name{n},Last,not a phone {n},,,,\n" for n in range(10, 15))
    start(feeds, sink)
    drop(feeds, "StudentData_2.csv", HEADER + "\n" + GOOD + BAD_PHONE + "3,,Hopper,202-555-0101,,,,\n" + bad_phones)
    feeds.deliver_mail()
    [message] = sink.wait_for(1)
    text = message.get_body(("plain",)).get_content()
    summary = text.split("Errors by code:\n", 1)[1].split("\n\n", 1)[0]
    assert summary == "  invalid-phone: 6 (rows 3, 5, 6, …)\n  missing-value: 1 (row 4)"
    assert text.index("Errors by code:") < text.index("Partner:")
    html = message.get_body(("html",)).get_content()
    assert "<li><code>invalid-phone</code>: 6 (rows 3, 5, 6, …)</li>" in html


def test_a_run_whose_every_row_was_rejected_sums_its_errors_and_links_admin_to_the_console(feeds, sink):
    """The failed run's transaction took the row errors it had stored with it: the recap of an
    all-rejected file said why it failed but not which rows, and the console showed none."""
    feeds.settings["web"] = {"base_url": "https://dropd.example.org"}
    start(feeds, sink)
    run = drop(feeds, "StudentData_2.csv", HEADER + "\n" + BAD_PHONE + "3,,Hopper,202-555-0101,,,,\n")
    assert run["status"] == "failed" and run["reason"].startswith("all-rows-rejected")
    feeds.deliver_mail()
    messages = {message["X-RcptTo"]: message for message in sink.wait_for(2)}
    for message in messages.values():
        text = message.get_body(("plain",)).get_content()
        summary = text.split("Errors by code:\n", 1)[1].split("\n\n", 1)[0]
        assert summary == "  invalid-phone: 1 (row 2)\n  missing-value: 1 (row 3)"
    link = f"In the web console: https://dropd.example.org/runs/{run['id']}\n"
    assert link in messages["ops@example.org"].get_body(("plain",)).get_content()
    assert "web console" not in messages["registrar@northfield.example"].as_string(), "partners have no console"


@pytest.mark.parametrize(
    "files, code, hint",
    [
        (
            {"StudentData_3_count.txt": "5\n", "StudentData_3.csv": HEADER + "\n" + GOOD},
            "count-mismatch",
            "count file must hold",
        ),
        ({"StudentData_4.csv": "Student ID,First Name\n1,Ada\n"}, "missing-column", "Fix the file's header"),
    ],
)
def test_a_failed_run_goes_to_notify_and_admin_each_their_own_version(feeds, sink, files, code, hint):
    start(feeds, sink, partner={"reply_to": ["help@example.org"]})
    for name, text in files.items():
        run = drop(feeds, name, text)
    assert run["status"] == "failed"
    feeds.deliver_mail()
    messages = {message["X-RcptTo"]: message for message in sink.wait_for(2)}
    partner, admin = messages["registrar@northfield.example"], messages["ops@example.org"]
    assert partner["Message-ID"] != admin["Message-ID"], "each recipient its own message"
    assert partner["To"] == "registrar@northfield.example" and admin["To"] == "ops@example.org"
    assert partner["Reply-To"] == "help@example.org" and admin["Reply-To"] is None
    for message in (partner, admin):
        assert message["Subject"] == f"[dropd] students: failed, {code}"
        text = message.get_body(("plain",)).get_content()
        assert text.split("\n")[2].startswith("0 applied (") and "created" not in text
        assert "Reason:" in text and code in text and "What to do:" in text and hint in text
    partner_text = partner.as_string()
    for admin_only in ("ops@example.org", str(feeds.drop_root), str(feeds.root), "dropd runs", "On the server"):
        assert admin_only not in partner_text
    admin_text = admin.get_body(("plain",)).get_content()
    assert "On the server:\n  dropd runs --feed students\n" in admin_text
    assert f"Folder:       {feeds.drop_root}/northfield/imports\n" in admin_text


def test_a_voided_run_says_nothing_was_applied_and_why(feeds, sink):
    start(feeds, sink)
    drop(feeds, "StudentData_3_count.txt", "5\n")
    drop(feeds, "StudentData_3.csv", HEADER + "\n" + GOOD)
    feeds.deliver_mail()
    [message, _] = sink.wait_for(2)
    text = message.get_body(("plain",)).get_content()
    assert text.split("\n")[2] == "0 applied (voided: count-mismatch, the count file said 5 rows, the file has 1)."
    assert "Applied:      0 (voided)\n" in text


def test_a_skipped_duplicate_is_mailed_only_when_notify_on_asks(feeds, sink):
    start(feeds, sink, notify_on=["failed", "skipped"])
    drop(feeds, "StudentData_5.csv", HEADER + "\n" + GOOD)
    run = drop(feeds, "StudentData_6.csv", HEADER + "\n" + GOOD)
    assert run["status"] == "skipped"
    feeds.deliver_mail()
    [message] = sink.wait_for(1)
    assert message["Subject"] == "[dropd] students: skipped, duplicate"
    assert "identical to one already imported" in message.get_body(("plain",)).get_content()


def test_by_default_success_and_failure_are_mailed_and_skips_are_not(feeds, sink):
    start(feeds, sink)
    drop(feeds, "StudentData_7.csv", HEADER + "\n" + GOOD)
    drop(feeds, "StudentData_8.csv", HEADER + "\n" + GOOD)  # a duplicate: skipped
    feeds.deliver_mail()
    assert [message["Subject"].split(":")[1] for message in sink.wait_for(1)] == [" success, 1 imported"]


def test_a_large_error_file_is_zipped_and_a_huge_one_cut_without_a_server_path(feeds, sink):
    bad_rows = "".join(f"{n},Name{n},Last,not a phone {n},,,,\n" for n in range(2, 2000))
    start(feeds, sink, smtp={"max_attachment": "60KB"})
    zipped = drop(feeds, "StudentData_9.csv", HEADER + "\n" + GOOD + bad_rows)
    feeds.deliver_mail()
    [message] = sink.wait_for(1)
    [(name, kind, data)] = attachments(message)
    assert kind == "application/zip" and name.endswith("-errors.csv.zip")
    with zipfile.ZipFile(io.BytesIO(data)) as archive, open(zipped["error_file"], "rb") as handle:
        assert archive.read(archive.namelist()[0]) == handle.read()

    feeds.stop()
    feeds.settings["smtp"]["max_attachment"] = "2KB"
    feeds.start()
    cut = drop(feeds, "StudentData_10.csv", HEADER + "\n" + GOOD + bad_rows.replace("Name", "Other"))
    feeds.deliver_mail()
    second = sink.wait_for(2)[-1]
    [(name, kind, data)] = attachments(second)
    assert name.endswith("-errors-first-rows.csv") and len(data) <= 2000
    with open(cut["error_file"], "rb") as handle:
        assert handle.read().startswith(data) and data.endswith(b"\n")
    body = second.get_body(("plain",)).get_content().replace("\n", " ")
    assert f"it is kept on the dropd server with run #{cut['id']}; its first" in body
    assert str(feeds.state_dir) not in body and "/" not in body.split("The error file")[1]


@pytest.mark.parametrize("security, login", [("starttls", ("dropd", "s3cret")), ("ssl", None)])
def test_starttls_with_auth_and_ssl(feeds, tmp_path, security, login):
    sink = SmtpSink(tmp_path / "smtp", security=security, login=login).start()
    try:
        start(feeds, sink)
        drop(feeds, "StudentData_11.csv", HEADER + "\n" + GOOD)
        assert feeds.deliver_mail() == 1
        [message] = sink.wait_for(1)
        assert message["Subject"].startswith("[dropd] students: success")
    finally:
        sink.stop()


def test_a_refused_recipient_is_kept_as_failed_and_the_others_get_it(feeds, tmp_path):
    sink = SmtpSink(tmp_path / "smtp", refuse={"gone@northfield.example"}).start()
    try:
        start(feeds, sink, notify=["gone@northfield.example", "registrar@northfield.example"])
        drop(feeds, "StudentData_12.csv", HEADER + "\n" + GOOD)
        assert feeds.deliver_mail() == 1
        assert [message["X-RcptTo"] for message in sink.wait_for(1)] == ["registrar@northfield.example"]
        [failed] = json.loads(feeds.cli("mail", "--pending", "--json").stdout)
        assert failed["status"] == "failed" and failed["recipient"] == "gone@northfield.example"
        assert "550" in failed["last_error"] and failed["last_error"].startswith("recipient:")
        assert feeds.deliver_mail() == 0, "a permanent refusal is not retried by itself"
        listing = feeds.cli("mail", "--pending").stdout
        assert "gone@northfield.example" in listing and "1 message waiting or failed" in listing
        again = feeds.cli("mail", "--retry", str(failed["id"]))
        assert "queued again" in again.stdout
        assert json.loads(feeds.cli("mail", "--pending", "--json").stdout)[0]["status"] == "pending"
    finally:
        sink.stop()


def test_a_huge_repetitive_error_file_is_bounded_unzipped_and_composed_in_bounded_memory(tmp_path):
    """A 1 GB error file zipped into a 1.46 MB mail (a zip bomb for the reader); a 500 MB one
    was zipped in memory (460 MiB)."""
    import subprocess
    import sys

    error_file = tmp_path / "run-7-students.csv"
    line = b"2,invalid-phone,complete,not a valid phone number,2,Ada,Lovelace,555\n"
    with open(error_file, "wb") as handle:
        handle.write(b"row,code,failure_type,message\n")
        block = line * (1 << 14)
        for _ in range((300 << 20) // len(block)):
            handle.write(block)
    script = f"""
import json, sys
from daemon.notify.recaps import _attachment
from daemon.store.records import RunRecord
record = RunRecord(7, "northfield", "students", "contacts", "arrival", "a.csv", None, 1, 0, 1, "2026-01-01T00:00:00+00:00",
                   "2026-01-01T00:00:01+00:00", "success", None, {{}}, {str(error_file)!r}, 1, None)
attachment = _attachment(record, 5_000_000)
peak = [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
sys.stdout.buffer.write(attachment.data)
print(json.dumps({{"name": attachment.name, "note": attachment.note, "peak_kib": int(peak)}}), file=sys.stderr)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    facts = json.loads(result.stderr.decode().strip().splitlines()[-1])
    assert facts["name"] == "run-7-students-errors.csv.zip" and len(result.stdout) <= 5_000_000
    with zipfile.ZipFile(io.BytesIO(result.stdout)) as archive:
        [member] = archive.infolist()
        assert member.file_size <= 50_000_000
        assert archive.read(member).endswith(b"\n")
    assert (
        facts["note"].startswith("The error file has 314,") and "kept on the dropd server with run #7" in facts["note"]
    )
    assert str(tmp_path) not in facts["note"]
    assert facts["peak_kib"] < 100 * 1024, facts


def test_an_export_recap_says_exported_and_where_never_imported(feeds, sink):
    """An export's recap read "success, 2 imported"."""
    feeds.settings["smtp"] = sink.settings()
    conversations = conversations_feed(notify=["data@northfield.example"], notify_on=["success"])
    feeds.add_feed_partner("northfield", [students_feed(), messages_feed(), conversations])
    feeds.start()
    feeds.upload("northfield", "/imports/StudentData_1.csv", (HEADER + "\n" + GOOD.replace("1,", "S1,", 1)).encode())
    rows = "".join(f"S1,web,2026-11-2{n}T10:00:00Z,hello {n},,,C{n},Camp,,,,m{n}\n" for n in (1, 2))
    feeds.upload("northfield", "/log/messages_1.csv", (MESSAGES_HEADER + "\n" + rows).encode())
    run = feeds.export("conversations")
    feeds.deliver_mail()
    [message] = [m for m in sink.wait_for(1) if m["X-RcptTo"] == "data@northfield.example"]
    assert message["Subject"] == "[dropd] conversations: success, 2 exported"
    text = message.get_body(("plain",)).get_content()
    assert text.split("\n")[2] == f"Exported 2 rows to {run['file']}, in your folder /outbox."
    assert "import" not in text.lower() and "Delivered:" in text and str(feeds.drop_root) not in text
