"""Field checks shared by the handlers: phone numbers (phonenumbers) and emails (email-validator)."""

import functools
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    EMAIL_MAX_LENGTH,
    LOCAL_PART_MAX_LENGTH,
)

# email-validator's own unquoted ASCII local part (RFC 5322 dot-atom).
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_SIMPLE_LOCAL = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*\\Z")
_MAILBOX_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


# The common shapes of a North American (NANP, country code 1) number: an optional +1 or 1,
# a 3-digit area code (optionally in brackets) and 7 digits, with spaces, dots or dashes.
_NANP_SHAPE = re.compile(r"\s*(\+?1[\s.\-]*)?\(?([2-9]\d{2})\)?[\s.\-]*(\d{3})[\s.\-]*(\d{4})\s*")


@functools.cache
def _dials_one(region: str) -> bool:
    return phonenumbers.country_code_for_region(region) == 1


def phone_to_e164(value: str, region: str) -> str | None:
    """The number in E.164 form, or None when it is not a valid phone number.

    Most numbers in partners' files are North American and written in a few plain shapes;
    for those the digits are taken directly and judged by `_nanp_valid`, phonenumbers' own
    validity rule run on its own metadata without the per-call overhead that is most of its
    cost. Every other input goes to the library. tests/handlers/test_validation.py checks that
    both paths give the same answers, over generated numbers of every shape and region."""
    shape = _NANP_SHAPE.fullmatch(value)
    if shape is not None and (shape.group(1) and shape.group(1).startswith("+") or _dials_one(region)):
        national = shape.group(2) + shape.group(3) + shape.group(4)
        return "+1" + national if _nanp_valid(national) else None
    return _library_e164(value, region)


def _desc_pattern(desc: Any, length: int) -> str | None:
    """The desc's national-number pattern if a number of `length` digits can match it at all
    (the library's `_is_number_matching_desc`: possible lengths first, an empty pattern never)."""
    if desc is None or (desc.possible_length and length not in desc.possible_length):
        return None
    pattern: str | None = desc.national_number_pattern
    return pattern or None


def _type_patterns(metadata: Any, length: int) -> tuple[str | None, list[str]]:
    """The general pattern and the type patterns `_number_type_helper` tries for numbers of
    `length` digits (mobile only when it differs from fixed line, which the library then skips)."""
    kinds = [metadata.premium_rate, metadata.toll_free, metadata.shared_cost, metadata.voip,
             metadata.personal_number, metadata.pager, metadata.uan, metadata.voicemail, metadata.fixed_line]  # fmt: skip
    if not metadata.same_mobile_and_fixed_line_pattern:
        kinds.append(metadata.mobile)
    patterns = [pattern for pattern in (_desc_pattern(desc, length) for desc in kinds) if pattern is not None]
    return _desc_pattern(metadata.general_desc, length), patterns


def _type_check(metadata: Any, length: int) -> Callable[[str], bool]:
    """`_number_type_helper(number, metadata) != UNKNOWN` for numbers of `length` digits: the
    general pattern and then any one type's pattern."""
    general, kinds = _type_patterns(metadata, length)
    if general is None or not kinds:
        return lambda number: False
    overall = re.compile(general)
    patterns = [re.compile(kind) for kind in kinds]
    return lambda number: overall.fullmatch(number) is not None and any(p.fullmatch(number) for p in patterns)


@functools.cache
def _nanp_rules() -> tuple[tuple["re.Pattern[str] | None", Callable[[str], bool]], ...]:
    """(leading-digits pattern or None, type check) for each region of country code 1, in the
    library's order (its main country first)."""
    from phonenumbers.phonemetadata import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    rules = []
    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is not None:
            leading = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
            rules.append((leading, _type_check(metadata, 10)))
    return tuple(rules)


def _nanp_valid(national: str) -> bool:
    """`phonenumbers.is_valid_number` for +1 and a 10-digit national number without a leading
    zero, step for step: the number's region is the first whose leading digits match (or, for
    a region without them, whose types match the number); it is valid when it matches a type of
    that region."""
    for leading, matches_type in _nanp_rules():
        if leading is None:
            if matches_type(national):
                return True
        elif leading.match(national):
            return matches_type(national)
    return False


@functools.lru_cache(maxsize=4096)
def _library_e164(value: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _library_email(value: str) -> str | None:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


@functools.lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """The library's verdict on a domain: its normalised form, or None when it is refused."""
    try:
        return validate_email("a@" + domain, check_deliverability=False).domain
    except EmailNotValidError:
        return None


def normalized_email(value: str) -> str | None:
    """The normalised address, or None when its syntax is wrong (no DNS lookups).

    Most addresses are a plain ASCII local part at one of a few domains, and checking the
    domain is most of email-validator's cost. For such addresses the local part is checked
    with the library's own dot-atom rule and the domain's verdict is remembered; everything
    else (quoting, Unicode, IDNA, reserved mailbox names, length limits) goes to the library.
    tests/handlers/test_validation.py checks that both paths give the same answers.
    """
    local, at, domain = value.rpartition("@")
    if (
        at
        and value.isascii()
        and len(value) <= EMAIL_MAX_LENGTH
        and len(local) <= LOCAL_PART_MAX_LENGTH
        and _SIMPLE_LOCAL.match(local)
        and local.lower() not in _MAILBOX_NAMES
        and not domain.startswith("[")
    ):
        verdict = _plain_domain(domain)
        if verdict is None:
            return None
        if verdict == domain.lower():
            return f"{local}@{verdict}"
    return _library_email(value)


# `_NANP_SHAPE` for a whole column of stripped cells, one a line: ASCII spaces and digits only.
_NANP_LINES = re.compile(r"^(?:\+?1[ \t.\-]*)?\(?([2-9][0-9]{2})\)?[ \t.\-]*([0-9]{3})[ \t.\-]*([0-9]{4})$", re.M)


@functools.cache
def _main_nanp_lines() -> "re.Pattern[str] | None":
    """The type check of country code 1's main region (the first, with no leading digits) as one
    pattern over lines of national numbers: a line matches when `_nanp_valid` finds it valid
    there, by that region's own patterns."""
    from phonenumbers.phonemetadata import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    metadata = PhoneMetadata.metadata_for_region(COUNTRY_CODE_TO_REGION_CODE[1][0].upper(), None)
    if metadata is None or metadata.leading_digits is not None:
        return None
    general, types = _type_patterns(metadata, 10)
    if general is None or not types:
        return None
    return re.compile(f"^(?=(?:{general})$)(?:{'|'.join(f'(?:{kind})' for kind in types)})$", re.M)


def phones_to_e164(cells: list[str], region: str) -> list[str | None]:
    """`phone_to_e164` of each cell (stripped already). A column whose every cell is a plain
    North American number valid in the main region is read in two regular-expression passes;
    any other column cell by cell (tested equal in tests/handlers/test_validation.py)."""
    valid = _main_nanp_lines()
    if valid is not None and _dials_one(region) and cells:
        joined = "\n".join(cells)
        shapes = _NANP_LINES.findall(joined)
        if len(shapes) == len(cells):
            nationals = [area + exchange + line for area, exchange, line in shapes]
            if len(valid.findall("\n".join(nationals))) == len(nationals):
                return ["+1" + national for national in nationals]
    return [phone_to_e164(cell, region) for cell in cells]


# Plain addresses of a whole column, one a line: the local part of `_SIMPLE_LOCAL`, and a domain.
_PLAIN_ADDRESS_LINES = re.compile(f"^([{_ATEXT}]+(?:\\.[{_ATEXT}]+)*)@([^@\\n]*)$", re.M)


def normalized_emails(cells: list[str]) -> list[str | None]:
    """`normalized_email` of each cell. A column of plain ASCII addresses at domains the library
    accepts as written (lower case) is checked in one regular-expression pass and one verdict a
    domain; any other column cell by cell (tested equal in tests/handlers/test_validation.py)."""
    joined = "\n".join(cells)
    if cells and joined.isascii() and max(map(len, cells)) <= EMAIL_MAX_LENGTH:
        parts = _PLAIN_ADDRESS_LINES.findall(joined)
        if (
            len(parts) == len(cells)
            and max(len(local) for local, _ in parts) <= LOCAL_PART_MAX_LENGTH
            and _MAILBOX_NAMES.isdisjoint([local.lower() for local, _ in parts])
            and all(
                not domain.startswith("[") and _plain_domain(domain) == domain
                for domain in {domain for _, domain in parts}
            )
        ):
            return list(cells)
    return [normalized_email(cell) for cell in cells]


@functools.cache
def _language_codes() -> frozenset[str]:
    """ISO 639-1: the two-letter codes pycountry's ISO 639 table gives an alpha_2 (184), read
    from the table's own JSON file on first use (only feeds that map a language pay for it).
    Importing pycountry and building its index of all 7,923 languages cost 55 ms, every
    `dropd ingest` and the daemon's first import; the file alone 10 ms
    (tests/handlers/test_validation.py checks the two agree)."""
    spec = importlib.util.find_spec("pycountry")
    assert spec is not None and spec.submodule_search_locations, "pycountry is a dependency"
    table = Path(spec.submodule_search_locations[0]) / "databases" / "iso639-3.json"
    with open(table, encoding="utf-8") as handle:
        languages = json.load(handle)["639-3"]
    return frozenset(language["alpha_2"] for language in languages if "alpha_2" in language)


def language_code(value: str) -> str | None:
    """An ISO 639-1 code, any case, in lower case; None for anything else."""
    code = value.strip().lower()
    return code if len(code) == 2 and code in _language_codes() else None
