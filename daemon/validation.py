"""Field checks shared by the handlers: phone numbers (phonenumbers) and emails (email-validator)."""

import functools

import phonenumbers
from email_validator import EmailNotValidError, validate_email


@functools.lru_cache(maxsize=4096)
def phone_to_e164(value: str, region: str) -> str | None:
    """The number in E.164 form, or None when it is not a valid phone number."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalized_email(value: str) -> str | None:
    """The normalised address, or None when its syntax is wrong (no DNS lookups)."""
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        return None
