"""Field checks shared by the handlers: phone numbers (phonenumbers) and emails (email-validator)."""

import functools
import re

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
    for those the digits are taken directly and judged by phonenumbers' own validity check
    (its per-region metadata) without its general parser, which is most of its cost. Every
    other input goes to the library's parser. tests/handlers/test_validation.py checks that
    both paths give the same answers, over generated numbers of every shape and region."""
    shape = _NANP_SHAPE.fullmatch(value)
    if shape is not None and (shape.group(1) and shape.group(1).startswith("+") or _dials_one(region)):
        national = shape.group(2) + shape.group(3) + shape.group(4)
        number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
        return "+1" + national if phonenumbers.is_valid_number(number) else None
    return _library_e164(value, region)


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
