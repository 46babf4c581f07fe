"""The contacts import, in-process against the store (tests/handlers/conftest.py): a file
"uploaded" is imported at once, results are read from the store or with the CLI."""

import csv
import json
import os

import pytest

from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import students_feed


@pytest.fixture
def school(dropd):
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    return dropd


def drop(dropd, name: str, text: str, encoding="utf-8") -> dict:
    """Upload a file over SFTP and return its finished run."""
    before = len(dropd.runs("--feed", "students"))
    dropd.upload("northfield", f"/imports/{name}", text.encode(encoding) if isinstance(text, str) else text)
    return dropd.wait_for_runs("students", before + 1)[-1]


def error_rows(run: dict) -> list[dict]:
    with open(run["error_file"], encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_missing_column_rejects_the_whole_file_and_keeps_it(school):
    run = drop(school, "StudentData_nocell.csv", "Student ID,First Name,Last Name\n1,A,B\n")
    assert run["status"] == "failed"
    assert run["reason"] == "missing-column: required column 'Cell' (mobile_number) is not in the header"
    assert school.contacts("northfield") == {}
    failed = sorted(os.listdir(school.home("northfield") / "imports" / "failed"))
    assert failed[1] == failed[0] + ".errors.csv"
    failed = failed[:1]
    assert len(failed) == 1 and failed[0].startswith("StudentData_nocell_")


@pytest.mark.parametrize(
    "row, code, failure_type",
    [
        ("5,,Smith,202-555-0111,,,,", "missing-value", "complete"),
        ("5,Al,Smith,12,,,,", "invalid-phone", "complete"),
        ("5,Al,Smith,202-555-0111,al@@example,,,", "invalid-email", "partial"),
        ("5,Al,Smith,202-555-0111,,,Maybe,", "invalid-messaging-status", "partial"),
        ("5,Al,Smith,202-555-0111,,,," + "x" * 1001, "custom-values-too-long", "partial"),
        ("5,Al,Smith,202-555-0111,,,,,extra", "malformed-row", "complete"),
        ('5,Al,"Sm"ith,202-555-0111,,,,', "malformed-row", "complete"),
    ],
)
def test_row_errors_name_row_code_and_problem(school, row, code, failure_type):
    run = drop(school, "StudentData_rows.csv", f"{HEADER}\n1,Ok,Row,202-555-0100,,,,\n{row}\n")
    assert run["status"] == "success"
    [error] = error_rows(run)
    assert (error["row"], error["code"], error["failure_type"]) == ("3", code, failure_type)
    contacts = school.contacts("northfield")
    assert "1" in contacts
    assert ("5" in contacts) == (failure_type == "partial")


def test_matching_errors_duplicate_contact_and_crm_mismatch(school):
    drop(
        school,
        "StudentData_a.csv",
        f"{HEADER}\n1,Ann,One,202-555-0101,,CRM-1,,\n2,Bob,Two,202-555-0102,,CRM-2,,\n3,Cy,Three,202-555-0103,,,,\n",
    )
    run = drop(
        school,
        "StudentData_b.csv",
        f"{HEADER}\n"
        "1,Ann,One,202-555-0102,,CRM-1,,\n"  # CRM-1 matches Ann, but the phone is Bob's
        "9,Zed,Nine,202-555-0102,,CRM-9,,\n"  # phone is Bob's, who has another CRM ID
        "8,Eve,Eight,202-555-0103,,,,\n"  # phone is Cy's, who has another contact ID
        "2,Bob,Two,202-555-0199,,CRM-7,,\n"  # contact ID 2 has CRM-2, not CRM-7
        "3,Cy,Three,202-555-0103,,CRM-1,,\n",  # Cy's own phone, but Ann's CRM ID
    )
    messages = [(e["row"], e["code"], e["message"]) for e in error_rows(run)]
    assert messages == [
        ("2", "duplicate-contact", "the CRM ID CRM-1 belongs to contact 1 and the mobile number +12025550102 to contact 2"),
        ("3", "phone-match-found-but-crmId-mismatch",
         "mobile number +12025550102 belongs to a contact whose CRM ID is CRM-2, not CRM-9"),
        ("4", "duplicate-contact", "the mobile number +12025550103 belongs to contact 3, not 8"),
        ("5", "contactId-match-found-but-crmId-mismatch", "contact 2 has CRM ID CRM-2, not CRM-7"),
        ("6", "duplicate-contact", "the CRM ID CRM-1 belongs to contact 1 and the mobile number +12025550103 to contact 3"),
    ]  # fmt: skip
    assert run["rows_rejected"] == 5 and run["rows_applied"] == 0


def test_a_message_never_starts_with_a_quote_a_spreadsheet_would_double(school):
    """`'555' is not a valid mobile number` was written `''555' ...` by the spreadsheet guard."""
    run = drop(school, "StudentData_q.csv", f"{HEADER}\n1,Al,Smith,555,,,,\n2,Bo,Smith,202-555-0111,it's@@x,,,\n")
    assert [e["message"] for e in error_rows(run)] == [
        'the mobile number "555" is not a valid phone number',
        'the email "it\'s@@x" is not a valid email address; it was not stored',
    ]


def test_phone_match_updates_and_acquires_crm_id_and_invalid_phone_on_update_is_partial(school):
    drop(school, "StudentData_a.csv", f"{HEADER}\n1,Ann,One,202-555-0101,,,,\n")
    run = drop(school, "StudentData_b.csv", f"{HEADER}\n1,Annie,One,+1 202 555 0101,,CRM-1,,\n")
    assert run["details"]["updated"] == 1
    run = drop(school, "StudentData_c.csv", f"{HEADER}\n1,Annie,One,555,,CRM-1,,\n")
    [error] = error_rows(run)
    assert (error["code"], error["failure_type"]) == ("invalid-phone", "partial")
    ann = school.contacts("northfield")["1"]
    assert (ann["first_name"], ann["crm_id"], ann["mobile_number"]) == ("Annie", "CRM-1", "+12025550101")


def test_unset_clears_and_empty_keeps(school):
    drop(school, "StudentData_a.csv", f"{HEADER}\n1,Ann,One,202-555-0101,a@example.org,CRM-1,Y,Maths\n")
    drop(school, "StudentData_b.csv", f"{HEADER}\n1,Ann,One,202-555-0101,UNSET,,,UNSET\n")
    ann = school.contacts("northfield")["1"]
    assert ann["email"] is None and ann["custom"] == {}
    assert ann["crm_id"] == "CRM-1" and ann["opted_out"] is True


def test_opt_out_semantics(dropd):
    feed = students_feed()
    feed["opt_out"]["empty"] = "opt_in"
    dropd.add_feed_partner("northfield", [feed])
    dropd.start()
    drop(dropd, "StudentData_a.csv", f"{HEADER}\n1,A,A,202-555-0101,,,Yes,\n2,B,B,202-555-0102,,,,\n")
    contacts = dropd.contacts("northfield")
    assert contacts["1"]["opted_out"] is True and contacts["2"]["opted_out"] is False
    drop(dropd, "StudentData_b.csv", f"{HEADER}\n1,A,A,202-555-0101,,,,\n")
    assert dropd.contacts("northfield")["1"]["opted_out"] is False


def test_without_opt_out_column_new_contacts_are_opted_in_and_existing_keep_status(school):
    drop(school, "StudentData_a.csv", f"{HEADER}\n1,A,A,202-555-0101,,,Y,\n")
    drop(school, "StudentData_b.csv", "Student ID,First Name,Last Name,Cell\n1,A,Z,202-555-0101\n2,B,B,202-555-0102\n")
    contacts = school.contacts("northfield")
    assert contacts["1"]["opted_out"] is True and contacts["1"]["last_name"] == "Z"
    assert contacts["2"]["opted_out"] is False


@pytest.mark.parametrize(
    "name, payload, delimiter, note",
    [
        ("bom", "\ufeff" + HEADER + "\n1,Zoë,Ng,202-555-0101,,,,\n", "comma", None),
        ("cp1252", (HEADER + "\n1,Zoë,Ng,202-555-0101,,,,Café\n").encode("cp1252"), "comma", "Windows-1252"),
        ("tab", HEADER.replace(",", "\t") + "\n1\tZoë\tNg\t202-555-0101\t\t\t\t\n", "tab", None),
        ("cr-only", HEADER + "\r1,Zoë,Ng,202-555-0101,,,,\r", "comma", None),
        ("crlf", HEADER + "\r\n1,Zoë,Ng,202-555-0101,,,,\r\n", "comma", None),
    ],
)
def test_encodings_delimiters_and_line_ends(dropd, name, payload, delimiter, note):
    dropd.add_feed_partner("northfield", [students_feed(delimiter=delimiter)])
    dropd.start()
    run = drop(dropd, f"StudentData_{name}.csv", payload)
    assert run["status"] == "success" and run["rows_applied"] == 1, run
    assert dropd.contacts("northfield")["1"]["first_name"] == "Zoë"
    assert (note is None and run["reason"] is None) or note in run["reason"]


def test_embedded_newlines_and_leading_zeros(school):
    run = drop(
        school,
        "StudentData_nl.csv",
        f'{HEADER}\n007,Ada,"Love\nlace",202-555-0101,,,,"Line one\nLine two"\n008,B,B,202-555-0102,,,,\n',
    )
    assert run["rows_applied"] == 2
    contacts = school.contacts("northfield")
    assert contacts["007"]["last_name"] == "Love\nlace" and contacts["007"]["custom"]["Major"] == "Line one\nLine two"


def test_runaway_quote_fails_the_file_with_malformed_row(school):
    run = drop(
        school, "StudentData_quote.csv", f'{HEADER}\n1,A,A,202-555-0101,,,,"never closed\n' + "x" * 1_100_000 + "\n"
    )
    assert run["status"] == "failed" and run["reason"].startswith("malformed-row: row 2: a cell is longer than")
    assert school.contacts("northfield") == {}


def test_duplicate_mapped_column_is_rejected(school):
    run = drop(
        school, "StudentData_dup.csv", "Student ID,First Name,Last Name,Cell,Cell\n1,A,A,202-555-0101,202-555-0102\n"
    )
    assert run["status"] == "failed" and run["reason"].startswith("duplicate-column:")


def test_required_custom_column_missing_rejects_the_file(dropd):
    dropd.add_feed_partner(
        "northfield", [students_feed(custom=[{"field": "Major", "column": "Major", "required": True}])]
    )
    dropd.start()
    run = drop(dropd, "StudentData_a.csv", "Student ID,First Name,Last Name,Cell\n1,A,A,202-555-0101\n")
    assert run["reason"] == "missing-column: required column 'Major' (custom field Major) is not in the header"


def test_rejected_rows_do_not_stop_good_ones_and_reimport_reports_partials_again(school):
    text = f"{HEADER}\n1,A,A,202-555-0101,bad,,,\n2,B,B,202-555-0102,,,,\n"
    first = drop(school, "StudentData_a.csv", text)
    archive = school.home("northfield") / "imports" / "archive"
    [archived] = [name for name in os.listdir(archive) if name.endswith("Z.csv")]
    again = school.cli("ingest", "students", str(archive / archived), "--force", "--json")

    second = json.loads(again.stdout)[0]
    assert second["details"]["unchanged"] == 1 and second["details"]["updated"] == 1
    assert [e["code"] for e in error_rows(second)] == [e["code"] for e in error_rows(first)] == ["invalid-email"]


def test_reimport_skips_known_records_only_while_no_other_feed_changed_the_contacts(dropd, tmp_path):
    second = students_feed(name="corrections", prefix="Fix", schedule=[])
    dropd.add_feed_partner("northfield", [students_feed(schedule=[]), second])
    dropd.start()
    roster = tmp_path / "roster.csv"
    roster.write_text(f"{HEADER}\n1,Ann,One,202-555-0101,,,,\n2,Bob,Two,202-555-0102,,,,\n")
    dropd.cli("ingest", "students", str(roster))
    [again] = json.loads(dropd.cli("ingest", "students", str(roster), "--force", "--json").stdout)
    assert again["details"]["unchanged"] == 2
    fix = tmp_path / "fix.csv"
    fix.write_text(f"{HEADER}\n1,Annabel,One,202-555-0101,,,,\n")
    dropd.cli("ingest", "corrections", str(fix))
    [restored] = json.loads(dropd.cli("ingest", "students", str(roster), "--force", "--json").stdout)
    assert (restored["details"]["updated"], restored["details"]["unchanged"]) == (1, 1)
    assert dropd.contacts("northfield")["1"]["first_name"] == "Ann"


def test_a_record_a_later_row_overwrote_is_applied_again_on_the_next_import(school, tmp_path):
    """The first row's text was applied cleanly, then the second row changed the same contact:
    the next import of the first row must change it back, not count it unchanged."""
    first = tmp_path / "first.csv"
    first.write_text(f"{HEADER}\n1,Ada,One,202-555-0101,,,,\n1,Grace,One,202-555-0101,,,,\n")
    school.cli("ingest", "students", str(first))
    again = tmp_path / "again.csv"
    again.write_text(f"{HEADER}\n1,Ada,One,202-555-0101,,,,\n")
    [run] = json.loads(school.cli("ingest", "students", str(again), "--json").stdout)
    assert (run["details"]["updated"], run["details"]["unchanged"]) == (1, 0)
    assert school.contacts("northfield")["1"]["first_name"] == "Ada"


def test_same_rows_under_a_reordered_header_are_applied_again(dropd, tmp_path):
    dropd.add_feed_partner("northfield", [students_feed(schedule=[])])
    dropd.start()
    first = tmp_path / "first.csv"
    first.write_text("Student ID,First Name,Last Name,Cell\n1,Ann,Lee,202-555-0101\n")
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("Student ID,Last Name,First Name,Cell\n1,Ann,Lee,202-555-0101\n")
    dropd.cli("ingest", "students", str(first))
    [run] = json.loads(dropd.cli("ingest", "students", str(swapped), "--json").stdout)
    assert run["details"]["updated"] == 1
    ann = dropd.contacts("northfield")["1"]
    assert (ann["first_name"], ann["last_name"]) == ("Lee", "Ann")


def test_error_csv_cells_are_safe_to_open_in_a_spreadsheet(school):
    header = HEADER.replace("Major", "=Major")
    school_feed_header = f"{header}\n"
    rows = [
        '1,=HYPERLINK("http://evil.example"),X,12,,,,',
        "2,+1+2,X,12,,,,",
        "3,-2+3,X,12,,,,",
        "4,@SUM(A1),X,12,,,,",
        '5,"\tTab",X,12,,,,',
        "6,'quoted,X,12,,,,",
        "7,plain,X,12,,,,",
    ]
    run = drop(school, "StudentData_formula.csv", school_feed_header + "\n".join(rows) + "\n")
    with open(run["error_file"], encoding="utf-8-sig", newline="") as handle:
        written = list(csv.reader(handle))
    assert written[0][4:] == [
        "Student ID",
        "First Name",
        "Last Name",
        "Cell",
        "Email",
        "CRM",
        "Text Opt Out",
        "'=Major",
    ]
    first_names = [line[5] for line in written[1:]]
    assert first_names == [
        '\'=HYPERLINK("http://evil.example")',
        "'+1+2",
        "'-2+3",
        "'@SUM(A1)",
        "'\tTab",
        "''quoted",
        "plain",
    ]
    assert [name[1:] if name.startswith("'") else name for name in first_names] == [
        '=HYPERLINK("http://evil.example")',
        "+1+2",
        "-2+3",
        "@SUM(A1)",
        "\tTab",
        "'quoted",
        "plain",
    ]


def test_a_file_whose_every_row_is_rejected_fails(school):
    drop(school, "StudentData_a.csv", f"{HEADER}\n1,Ann,One,202-555-0101,,,,\n")
    run = drop(school, "StudentData_b.csv", f"{HEADER}\n2,,Two,202-555-0102,,,,\n3,Cy,Three,12,,,,\n")
    assert run["status"] == "failed"
    assert run["reason"] == "all-rows-rejected: all 2 data rows were rejected; nothing was applied (see the error file)"
    assert (run["rows_in_file"], run["rows_applied"], run["rows_rejected"]) == (2, 0, 2)
    assert [(e["row"], e["code"]) for e in error_rows(run)] == [("2", "missing-value"), ("3", "invalid-phone")]
    assert set(school.contacts("northfield")) == {"1"}
    [failed, report] = sorted(os.listdir(school.home("northfield") / "imports" / "failed"))
    assert report == failed + ".errors.csv"
    assert failed.startswith("StudentData_b_")


def test_error_report_false_writes_no_report(dropd):
    dropd.add_feed_partner("northfield", [students_feed(error_report=False)])
    dropd.start()
    run = drop(dropd, "StudentData_q.csv", f"{HEADER}\n1,Ann,One,202-555-0101,,,,\n2,,Two,202-555-0102,,,,\n")
    assert run["status"] == "success" and run["rows_rejected"] == 1 and run["error_file"]
    archived = os.listdir(dropd.home("northfield") / "imports" / "archive")
    assert len(archived) == 1 and archived[0].endswith("Z.csv")


def test_missing_column_names_every_missing_header(school):
    run = drop(school, "StudentData_two.csv", "Student ID,First Name\n1,A\n")
    assert run["reason"] == (
        "missing-column: required columns 'Last Name' (last_name), 'Cell' (mobile_number) are not in the header"
    )


def test_phones_and_emails_round_trip_through_the_store_as_the_libraries_write_them(school):
    """Whatever shape a partner writes a phone or an email in, the store holds phonenumbers'
    E.164 and email-validator's normal form (both backends, both the batch and the row path)."""
    import random

    from tests.handlers.test_validation import phonenumbers_e164

    rng = random.Random(2026)
    shapes = ("({a}) {e}-{l}", "{a}-{e}-{l}", "+1 {a} {e} {l}", "1{a}{e}{l}", "{a}.{e}.{l}", " {a} {e} {l} ")
    rows, expected = [], {}
    for n in range(300):
        area, exchange, line = rng.choice(["202", "415", "617", "312"]), f"{rng.randrange(200, 999)}", f"{n:04d}"
        cell = rng.choice(shapes).format(a=area, e=exchange, l=line)
        email = rng.choice(["Ada.{n}@Example.ORG", "ada.{n}@example.org", "ADA+{n}@Sub.Example.org"]).format(n=n)
        quote = '"' if n % 7 == 0 else ""  # some rows down the row-at-a-time path
        rows.append(f"S{n},{quote}Ada{quote},Lovelace,{cell},{email},,,\n")
        expected[f"S{n}"] = (
            phonenumbers_e164(cell, "US"),
            email.rsplit("@", 1)[0] + "@" + email.rsplit("@", 1)[1].lower(),
        )
    run = drop(school, "StudentData_shapes.csv", HEADER + "\n" + "".join(rows))
    assert run["status"] == "success" and run["rows_applied"] == 300, run
    stored = {
        key: (contact["mobile_number"], contact["email"]) for key, contact in school.contacts("northfield").items()
    }
    assert stored == expected
    assert all(phone and phone.startswith("+1") and len(phone) == 12 for phone, _ in stored.values())


SEED_001_HEADER = "Student ID,First Name,Last Name,Cell,Preferred,Language"


@pytest.fixture
def seed_001(dropd):
    columns = {"contact_id": "Student ID", "first_name": "First Name", "last_name": "Last Name",
               "mobile_number": "Cell", "preferred_name": "Preferred", "language": "Language"}  # fmt: skip
    feed = students_feed(columns=columns, custom=[])
    del feed["opt_out"]
    dropd.add_feed_partner("northfield", [feed])
    dropd.start()
    return dropd


def stored(dropd, contact_id: str) -> tuple:
    contact = dropd.contacts("northfield")[contact_id]
    return contact["preferred_name"], contact["language"]


def test_language_is_an_iso_639_1_code_stored_lower_case_or_a_partial_error(seed_001):
    rows = "1,Ana,Lima,202-555-0101,,PT\n2,Bo,Berg,202-555-0102,,sv\n3,Cy,Cole,202-555-0103,,english\n4,Di,Dee,202-555-0104,,xx\n"
    run = drop(seed_001, "StudentData_lang.csv", f"{SEED_001_HEADER}\n{rows}")
    assert (run["status"], run["rows_applied"], run["details"]["partial"]) == ("success", 4, 2)
    assert [(e["row"], e["code"], e["failure_type"], e["message"]) for e in error_rows(run)] == [
        ("4", "invalid-language", "partial", 'the language "english" is not an ISO 639-1 code (like "en" or "es"); it was not stored'),
        ("5", "invalid-language", "partial", 'the language "xx" is not an ISO 639-1 code (like "en" or "es"); it was not stored'),
    ]  # fmt: skip
    assert [stored(seed_001, n)[1] for n in "1234"] == ["pt", "sv", None, None]
    whole = drop(
        seed_001, "StudentData_new.csv", f"{SEED_001_HEADER}\n5,Ed,Eng,202-555-0105,,EN\n6,Flo,Fox,202-555-0106,,es\n"
    )
    assert whole["details"]["created"] == 2 and [stored(seed_001, n)[1] for n in "56"] == ["en", "es"], (
        "a batch taken whole"
    )
    later = drop(seed_001, "StudentData_lang2.csv", f"{SEED_001_HEADER}\n1,Ana,Lima,202-555-0101,,xx\n")
    assert [e["code"] for e in error_rows(later)] == ["invalid-language"] and stored(seed_001, "1")[1] == "pt"


def test_a_preferred_name_is_set_while_blank_and_never_changed_by_a_file(seed_001):
    drop(
        seed_001,
        "StudentData_p1.csv",
        f"{SEED_001_HEADER}\n1,Robert,Ross,202-555-0101,Bob,\n2,Susan,Sims,202-555-0102,,\n",
    )
    assert stored(seed_001, "1")[0] == "Bob" and stored(seed_001, "2")[0] is None
    run = drop(
        seed_001, "StudentData_p2.csv",
        f"{SEED_001_HEADER}\n1,Robert,Ross,202-555-0101,Rob,\n2,Susan,Sims,202-555-0102,Sue,\n1,Robert,Roth,202-555-0101,UNSET,\n",
    )  # fmt: skip
    assert (run["status"], run["rows_applied"], run["details"]["partial"]) == ("success", 3, 2)
    assert [(e["row"], e["code"], e["message"]) for e in error_rows(run)] == [
        ("2", "invalid-preferred-name", 'the preferred name "Bob" is set already and may not be changed to "Rob"; it was kept'),
        ("4", "invalid-preferred-name", 'the preferred name "Bob" is set already and may not be cleared; it was kept'),
    ]  # fmt: skip
    assert stored(seed_001, "1")[0] == "Bob" and stored(seed_001, "2")[0] == "Sue"
    assert seed_001.contacts("northfield")["1"]["last_name"] == "Roth", "the rest of the row is applied"


def test_with_create_false_only_known_contacts_are_updated(dropd):
    dropd.add_feed_partner(
        "northfield", [students_feed(), students_feed(name="updates", prefix="Updates", create=False)]
    )
    dropd.start()
    drop(dropd, "StudentData_1.csv", f"{HEADER}\n1,Ann,One,202-555-0101,,CRM-1,,\n")
    before = len(dropd.runs("--feed", "updates"))
    rows = "1,Annie,One,202-555-0101,,CRM-1,,\n7,New,Person,202-555-0107,,,,\n" + "".join(
        f"{n},N{n},L{n},202-556-{n:04d},,,,\n" for n in range(100, 300)
    )
    dropd.upload("northfield", "/imports/Updates_1.csv", f"{HEADER}\n{rows}".encode())
    run = dropd.wait_for_runs("updates", before + 1)[-1]
    assert (run["rows_in_file"], run["rows_applied"], run["rows_rejected"]) == (202, 1, 201)
    errors = error_rows(run)
    assert {e["code"] for e in errors} == {"contact-not-found"} and errors[0]["failure_type"] == "complete"
    assert errors[0]["message"] == "no contact matches contact ID 7, and this feed creates none"
    assert set(dropd.contacts("northfield")) == {"1"} and dropd.contacts("northfield")["1"]["first_name"] == "Annie"


def test_a_row_holding_the_previous_phone_does_not_revert_it(school):
    """Seed 001, contact-out-of-sync: the partner's system still has the number the person
    changed since; the file must not put the old one back."""
    drop(school, "StudentData_1.csv", f"{HEADER}\n1,Ann,One,202-555-0101,,,,\n")
    drop(school, "StudentData_2.csv", f"{HEADER}\n1,Ann,One,202-555-0199,,,,\n")  # the person's new number
    run = drop(school, "StudentData_3.csv", f"{HEADER}\n1,Annie,One,202-555-0101,,,,\n")
    assert (run["status"], run["rows_applied"], run["details"]["partial"]) == ("success", 1, 1)
    [error] = error_rows(run)
    assert (error["code"], error["failure_type"], error["message"]) == (
        "contact-out-of-sync", "partial",
        "the mobile number +12025550101 is contact 1's previous number; the current one, +12025550199, is kept",
    )  # fmt: skip
    ann = school.contacts("northfield")["1"]
    assert (ann["mobile_number"], ann["first_name"]) == ("+12025550199", "Annie")
    moved = drop(school, "StudentData_4.csv", f"{HEADER}\n1,Annie,One,202-555-0177,,,,\n")
    assert moved["error_file"] is None and school.contacts("northfield")["1"]["mobile_number"] == "+12025550177"


STATUS_HEADER = "Student ID,First Name,Last Name,Cell,SMS Status,Web Status"


@pytest.fixture
def statuses(dropd):
    columns = {"contact_id": "Student ID", "first_name": "First Name", "last_name": "Last Name", "mobile_number": "Cell",
               "messaging_status_sms": "SMS Status", "messaging_status_web_bot": "Web Status"}  # fmt: skip
    feed = students_feed(columns=columns, custom=[])
    del feed["opt_out"]
    dropd.add_feed_partner("northfield", [feed])
    dropd.start()
    return dropd


def channel_statuses(dropd) -> dict:
    return {
        cid: (c["messaging_status_sms"], c["messaging_status_web_bot"])
        for cid, c in dropd.contacts("northfield").items()
    }


def test_a_file_may_opt_a_channel_out_but_never_back_in_nor_pause_it(statuses):
    whole = drop(
        statuses,
        "StudentData_1.csv",
        f"{STATUS_HEADER}\n1,A,A,202-555-0101,Opted In,\n2,B,B,202-555-0102,opted out,OPTED-OUT\n",
    )
    assert whole["details"]["created"] == 2 and whole["error_file"] is None
    assert channel_statuses(statuses) == {"1": ("opted-in", None), "2": ("opted-out", "opted-out")}
    run = drop(
        statuses, "StudentData_2.csv",
        f"{STATUS_HEADER}\n1,A,A,202-555-0101,opted-out,paused\n2,B,B,202-555-0102,Opted In,UNSET\n"
        "3,C,C,202-555-0103,maybe,\n",
    )  # fmt: skip
    assert (run["status"], run["rows_applied"], run["details"]["partial"]) == ("success", 3, 3)
    assert [(e["row"], e["code"], e["failure_type"], e["message"]) for e in error_rows(run)] == [
        ("2", "invalid-messaging-status", "partial", "a file may not pause web bot messages (the person texts #pause); the web bot status was kept"),
        ("3", "invalid-messaging-status", "partial", "a file may not opt the contact back in to sms messages (the person texts START); the sms status was kept"),
        ("3", "invalid-messaging-status", "partial", "a file may not opt the contact back in to web bot messages (the person texts START); the web bot status was kept"),
        ("4", "invalid-messaging-status", "partial", 'the sms status "maybe" is not one of: opted-in, opted-out, paused; the sms status was kept'),
    ]  # fmt: skip
    assert channel_statuses(statuses) == {"1": ("opted-out", None), "2": ("opted-out", "opted-out"), "3": (None, None)}


def test_typed_custom_fields_are_stored_typed_and_a_bad_value_drops_that_field_only(dropd):
    custom = [{"field": "year", "column": "Year", "type": "integer"}, {"field": "gpa", "column": "GPA", "type": "number"},
              {"field": "athlete", "column": "Athlete", "type": "boolean"}, {"field": "start", "column": "Start", "type": "date"},
              {"field": "major", "column": "Major"}]  # fmt: skip
    dropd.add_feed_partner("northfield", [students_feed(custom=custom)])
    dropd.start()
    header = f"{HEADER.removesuffix(',Major')},Year,GPA,Athlete,Start,Major"
    whole = drop(dropd, "StudentData_1.csv", f"{header}\n1,A,A,202-555-0101,,,,2027,3.5,yes,2026-09-01,Maths\n")
    assert whole["error_file"] is None
    assert dropd.contacts("northfield")["1"]["custom"] == {
        "year": 2027, "gpa": 3.5, "athlete": True, "start": "2026-09-01", "major": "Maths"
    }  # fmt: skip
    run = drop(
        dropd,
        "StudentData_2.csv",
        f'{header}\n2,B,B,202-555-0102,,,,2027.5,four,maybe,09/01/2026,0\n3,C,C,202-555-0103,,,,-1,"1,200",n,2026-02-28,\n',
    )
    assert (run["rows_applied"], run["details"]["partial"]) == (2, 1)
    assert [(e["row"], e["code"], e["message"]) for e in error_rows(run)] == [
        ("2", "invalid-attribute-data", "year: '2027.5' is not a whole number; the field was dropped"),
        ("2", "invalid-attribute-data", "gpa: 'four' is not a number; the field was dropped"),
        ("2", "invalid-attribute-data", "athlete: 'maybe' is not a boolean (true/false, 1/0, yes/no); the field was dropped"),
        ("2", "invalid-attribute-data", "start: '09/01/2026' is not a date (YYYY-MM-DD); the field was dropped"),
    ]  # fmt: skip
    contacts = dropd.contacts("northfield")
    assert contacts["2"]["custom"] == {"major": "0"}, "the other fields and the rest of the row are applied"
    assert contacts["3"]["custom"] == {"year": -1, "gpa": 1200, "athlete": False, "start": "2026-02-28"}
