"""The email fast path gives exactly email-validator's answer; phones come from phonenumbers."""

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.validation import _library_email, normalized_email, phone_to_e164

LOCAL_CHARS = "abcXYZ019._+-!#$%&'*/=?^`{|}~\"() ,:;<>@[\\]é"
DOMAIN_CHARS = "abcXYZ019-._é"
TLDS = [
    "com",
    "org",
    "EDU",
    "test",
    "local",
    "localhost",
    "invalid",
    "onion",
    "co.uk",
    "123",
    "x",
    "xn--p1ai",
    "-bad",
    "",
]

label = st.text(alphabet=DOMAIN_CHARS, min_size=0, max_size=70)
local = st.one_of(
    st.text(alphabet=LOCAL_CHARS, min_size=0, max_size=70),
    st.sampled_from(["postmaster", "Abuse", "WEBMASTER", "a" * 64, "a" * 65, "first.last", "x..y", ".lead", "trail."]),
)
domain = st.builds(
    lambda parts, tld: ".".join(parts + [tld]), st.lists(label, min_size=0, max_size=4), st.sampled_from(TLDS)
)
address = st.one_of(
    st.builds(lambda name, d: f"{name}@{d}", local, domain),
    st.builds(
        lambda name, d: f"{name}@{d}",
        local,
        st.sampled_from(["example.org", "EXAMPLE.ORG", "xn--bcher-kva.ch", "[127.0.0.1]", "a" * 250 + ".com"]),
    ),
    st.text(max_size=40),
)

REAL_WORLD = [
    "jane.doe@example.org",
    "Jane.Doe@Example.ORG",
    "j.o'neil@school.edu",
    "first+tag@gmail.com",
    "user@mail.example.co.uk",
    "a_b-c@sub-domain.example.net",
    "x@example",
    "user@localhost",
    "user@@example.org",
    "user@example..org",
    "user@-example.org",
    "user.@example.org",
    '"quoted"@example.org',
    "Name <user@example.org>",
    "user@[192.168.1.1]",
    "user@xn--mnchen-3ya.de",
    "üser@example.org",
    "user@münchen.de",
    "postmaster@example.org",
    "user@example.org.",
    " user@example.org",
    "a" * 64 + "@example.org",
    "a" * 65 + "@example.org",
    "user@" + "a" * 63 + "." + "b" * 63 + ".com",
]


def test_real_world_formats_match_the_library():
    for value in REAL_WORLD:
        assert normalized_email(value) == _library_email(value), value


@settings(max_examples=3000, deadline=None)
@given(address)
def test_generated_addresses_match_the_library(value):
    assert normalized_email(value) == _library_email(value)


def test_phones_are_normalised_to_e164_or_refused():
    assert phone_to_e164("(202) 555-0143", "US") == "+12025550143"
    assert phone_to_e164("+44 20 7946 0958", "US") == "+442079460958"
    assert phone_to_e164("020 7946 0958", "GB") == "+442079460958"
    for bad in ("123", "555-0143", "+1 000 000 0000", "phone", ""):
        assert phone_to_e164(bad, "US") is None


# Phones: the NANP fast path gives exactly the library parser's answer.
digits = st.text(alphabet="0123456789", min_size=1, max_size=4)
separator = st.sampled_from(["", " ", "-", ".", "  ", " - "])
regions = st.sampled_from(["US", "CA", "PR", "JM", "BS", "GB", "FR", "DE", "IN", "AU", "MX", "BR", "JP", "ZZ", "001"])
nanp_like = st.builds(
    lambda prefix, area, sep1, exchange, sep2, line, brackets, pad: (
        f"{pad}{prefix}{'(' + area + ')' if brackets else area}{sep1}{exchange}{sep2}{line}{pad}"
    ),
    st.sampled_from(["", "1", "1 ", "1-", "+1", "+1 ", "+1-", "+ 1", "+44 ", "0", "01"]),
    st.text(alphabet="0123456789", min_size=3, max_size=3),
    separator,
    st.text(alphabet="0123456789", min_size=3, max_size=3),
    separator,
    st.text(alphabet="0123456789", min_size=4, max_size=4),
    st.booleans(),
    st.sampled_from(["", " "]),
)
phone = st.one_of(
    nanp_like, st.builds(lambda parts: " ".join(parts), st.lists(digits, max_size=5)), st.text(max_size=16)
)


@settings(max_examples=3000, deadline=None)
@given(phone, regions)
def test_generated_phone_numbers_match_the_library(value, region):
    from handlers.validation import _library_e164

    assert phone_to_e164(value, region) == _library_e164(value, region)


# Every 10-digit national number a NANP shape can yield: the rule run on the library's metadata
# gives the library's own `is_valid_number`, in every region of country code 1 and outside them.
@settings(max_examples=5000, deadline=None)
@given(st.text(alphabet="23456789", min_size=1, max_size=1), st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_nanp_validity_matches_the_library(first, rest):
    import phonenumbers

    from handlers.validation import _nanp_valid

    national = first + rest
    number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
    assert _nanp_valid(national) == phonenumbers.is_valid_number(number), national


def test_nanp_validity_matches_the_library_on_its_own_numbers():
    """The example numbers of every type of every NANP region, and their neighbours."""
    import phonenumbers
    from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

    from handlers.validation import _nanp_valid

    checked = 0
    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None or example.country_code != 1:
                continue
            for delta in (-1, 0, 1, 10**6, -(10**6)):
                national = str(example.national_number + delta)
                if len(national) != 10 or national[0] in "01":
                    continue
                number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
                assert _nanp_valid(national) == phonenumbers.is_valid_number(number), (region, national)
                checked += 1
    assert checked > 200


def test_the_librarys_own_example_numbers_match():
    import phonenumbers

    from handlers.validation import _library_e164

    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for fmt in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL):
                written = phonenumbers.format_number(example, fmt)
                for guess in ("US", region):
                    assert phone_to_e164(written, guess) == _library_e164(written, guess), (written, guess)
                    checked += 1
    assert checked > 1000


# Equality with the libraries themselves (not with our wrappers around them: a wrapper that
# returned its input unchanged survived the comparisons above), idempotence, and the column
# functions, for the same generated values.
def phonenumbers_e164(value: str, region: str) -> str | None:
    import phonenumbers

    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if phonenumbers.is_valid_number(number)
        else None
    )


@settings(max_examples=2000, deadline=None)
@given(phone, regions)
def test_e164_is_phonenumbers_own_formatting_and_stays_as_it_is(value, region):
    from handlers.validation import phones_to_e164

    expected = phonenumbers_e164(value, region)
    assert phone_to_e164(value, region) == expected
    assert phones_to_e164([value.strip()], region) == [phonenumbers_e164(value.strip(), region)]
    if expected is not None:
        assert expected.startswith("+") and expected[1:].isdigit()
        assert phone_to_e164(expected, region) == expected, "normalising twice changes nothing"
        assert phone_to_e164(expected, "ZZ") == expected, "an E.164 number needs no region"


@settings(max_examples=2000, deadline=None)
@given(address)
def test_emails_are_email_validators_own_normal_form_and_stay_as_they_are(value):
    from email_validator import EmailNotValidError, validate_email

    from handlers.validation import normalized_emails

    try:
        expected = validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    assert normalized_email(value) == expected
    assert normalized_emails([value]) == [expected]
    if expected is not None:
        assert normalized_email(expected) == expected, "normalising twice changes nothing"


def test_language_codes_are_pycountrys_two_letter_codes():
    """dropd reads the ISO 639 table's JSON file itself (building pycountry's index of every
    language cost 55 ms an ingest): the codes must be exactly those pycountry gives."""
    import pycountry

    from handlers.validation import _language_codes

    assert _language_codes() == {language.alpha_2 for language in pycountry.languages if hasattr(language, "alpha_2")}
    assert len(_language_codes()) == 184
