"""OpenPGP feeds against the real `gpg` CLI: files partners encrypt (and sign) with it are
imported, and what dropd encrypts decrypts with it to the plain export's bytes."""

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.daemon.exports.test_exports import log_messages, message
from tests.daemon.exports.test_exports import start as start_exports
from tests.helpers import CONTACTS_HEADER, InProcessFeeds, conversations_feed, students_feed

ROWS = CONTACTS_HEADER + "\n1,Ann,One,202-555-0101,,,,\n2,Bob,Two,202-555-0102,,,,\n"


class Gpg:
    """The `gpg` CLI over a keyring of its own (a partner's, say)."""

    def __init__(self, home: Path):
        self.home = home
        home.mkdir(mode=0o700)

    def run(self, *args: str, data: bytes | None = None) -> bytes:
        result = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
                                 "--trust-model", "always", *args], input=data, capture_output=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout

    def new_key(self, email: str, passphrase: str = "") -> None:
        self.run(
            "--passphrase", passphrase, "--quick-gen-key", f"{email} <{email}>", "future-default", "default", "never"
        )

    def export(self, email: str, folder: Path, secret: bool = False, passphrase: str = "") -> Path:
        path = folder / f"{email}.{'sec' if secret else 'pub'}.asc"
        args = ("--passphrase", passphrase, "--export-secret-keys") if secret else ("--export",)
        path.write_bytes(self.run("--armor", *args, email))
        return path

    def stop(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True, check=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """dropd's key pair (and one with a passphrase), the partner's, and a stranger's."""
    root = tmp_path_factory.mktemp("keys")
    ours, partner, stranger = Gpg(root / "ours"), Gpg(root / "partner"), Gpg(root / "stranger")
    ours.new_key("dropd@example.org")
    ours.new_key("locked@example.org", passphrase="open sesame")
    partner.new_key("partner@example.org")
    stranger.new_key("stranger@example.org")
    for public in (ours.export("dropd@example.org", root), ours.export("locked@example.org", root)):
        partner.run("--import", str(public))
        stranger.run("--import", str(public))
    (root / "passphrase").write_text("open sesame\n")
    found = {
        "secret": ours.export("dropd@example.org", root, secret=True),
        "locked": ours.export("locked@example.org", root, secret=True, passphrase="open sesame"),
        "passphrase": root / "passphrase",
        "partner_public": partner.export("partner@example.org", root),
        "partner": partner,
        "stranger": stranger,
    }
    partner.run("--import", str(found["partner_public"]))
    yield found
    for gpg in (ours, partner, stranger):
        gpg.stop()


def encrypted(gpg: Gpg, plain: str, to="dropd@example.org", sign_as: str | None = None) -> bytes:
    signing = ("--local-user", sign_as, "--sign") if sign_as else ()
    return gpg.run("--recipient", to, *signing, "--encrypt", data=plain.encode())


def importing(tmp_path, password_hash, **feed) -> InProcessFeeds:
    feeds = InProcessFeeds(tmp_path, password_hash)
    feeds.add_feed_partner("northfield", [students_feed(**feed)])
    feeds.start()
    return feeds


def failed_folder(feeds) -> list[str]:
    folder = feeds.home("northfield") / "imports" / "failed"
    return sorted(name for name in os.listdir(folder) if not name.endswith(".errors.csv")) if folder.is_dir() else []


def no_plaintext_left(feeds) -> None:
    state = feeds.state_dir
    leftovers = [p for p in state.rglob("*") if p.is_file() and b"Ann" in p.read_bytes()[:100_000]]
    assert leftovers == [], leftovers


def test_a_file_encrypted_and_signed_with_gpg_is_imported_under_its_inner_name(tmp_path, password_hash, keys):
    feeds = importing(tmp_path, password_hash, decrypt_key_file=str(keys["secret"]),
                      verify_key_file=str(keys["partner_public"]))  # fmt: skip
    feeds.upload("northfield", "/imports/StudentData_1.csv.pgp",
                 encrypted(keys["partner"], ROWS, sign_as="partner@example.org"))  # fmt: skip
    [run] = feeds.runs()
    assert run["status"] == "success" and run["rows_applied"] == 2
    assert run["file"] == "StudentData_1.csv" and run["sha256"] == hashlib.sha256(ROWS.encode()).hexdigest()
    assert sorted(feeds.contacts("northfield")) == ["1", "2"]
    no_plaintext_left(feeds)
    feeds.upload("northfield", "/imports/StudentData_2.csv.gpg",
                 encrypted(keys["partner"], ROWS, sign_as="partner@example.org"))  # fmt: skip
    assert feeds.runs()[0]["status"] == "skipped", "the same rows encrypted again are a duplicate"
    feeds.stop()


def test_an_armoured_file_and_a_key_with_a_passphrase(tmp_path, password_hash, keys):
    feeds = importing(tmp_path, password_hash, decrypt_key_file=str(keys["locked"]),
                      decrypt_passphrase_file=str(keys["passphrase"]))  # fmt: skip
    armoured = keys["partner"].run("--armor", "--recipient", "locked@example.org", "--encrypt", data=ROWS.encode())
    feeds.upload("northfield", "/imports/StudentData_1.csv.asc", armoured)
    assert feeds.runs()[0]["status"] == "success"
    feeds.stop()


@pytest.mark.parametrize("case", ["wrong key", "corrupt", "not encrypted", "no key configured"])
def test_a_file_that_does_not_decrypt_fails_coded_with_nothing_applied(tmp_path, password_hash, keys, case):
    feed = {} if case == "no key configured" else {"decrypt_key_file": str(keys["locked"] if case == "wrong key"
                                                                             else keys["secret"])}  # fmt: skip
    if case == "wrong key":
        feed["decrypt_passphrase_file"] = str(keys["passphrase"])
    feeds = importing(tmp_path, password_hash, **feed)
    data = encrypted(keys["partner"], ROWS)
    content = {"corrupt": data[:40] + bytes(b ^ 0x5A for b in data[40:80]) + data[80:], "not encrypted": ROWS.encode()}
    feeds.upload("northfield", "/imports/StudentData_1.csv.pgp", content.get(case, data))
    [run] = feeds.runs()
    assert run["status"] == "failed" and run["reason"].startswith("decrypt-failed: "), run["reason"]
    assert feeds.contacts("northfield") == {}
    assert [name.startswith("StudentData_1.csv") for name in failed_folder(feeds)] == [True]
    if case == "no key configured":
        assert "the feed has no decrypt_key_file" in run["reason"]
    no_plaintext_left(feeds) if case != "no key configured" else None
    feeds.stop()


@pytest.mark.parametrize("signer", ["stranger@example.org", None])
def test_a_file_not_signed_by_the_partners_key_fails_with_bad_signature(tmp_path, password_hash, keys, signer):
    feeds = importing(tmp_path, password_hash, decrypt_key_file=str(keys["secret"]),
                      verify_key_file=str(keys["partner_public"]))  # fmt: skip
    feeds.upload("northfield", "/imports/StudentData_1.csv.pgp", encrypted(keys["stranger"], ROWS, sign_as=signer))
    [run] = feeds.runs()
    assert run["status"] == "failed" and run["reason"].startswith("bad-signature: the file is ")
    assert ("not signed" in run["reason"]) == (signer is None)
    assert feeds.contacts("northfield") == {}
    feeds.stop()


def test_an_encrypted_export_decrypts_with_gpg_to_the_plain_exports_bytes(tmp_path, password_hash, keys):
    feeds = InProcessFeeds(tmp_path, password_hash)
    start_exports(feeds, conversations_feed(encrypt_key_file=str(keys["partner_public"]), checksum_file="write"),
                  conversations_feed(name="plain", prefix="plain"))  # fmt: skip
    try:
        log_messages(feeds, "messages_1.csv", message(1), message(2, direction="outgoing", source="AI"))
        sealed, plain = feeds.export("conversations"), feeds.export("plain")
        outbox = feeds.home("northfield") / "outbox"
        assert sealed["file"].endswith(".csv.pgp") and sealed["status"] == "success"
        decrypted = keys["partner"].run("--decrypt", str(outbox / sealed["file"]))
        assert decrypted == (outbox / plain["file"]).read_bytes()
        assert hashlib.sha256(decrypted).hexdigest() == sealed["details"]["plaintext_sha256"]
        assert (outbox / f"{sealed['file']}.sha256").read_text() == f"{sealed['sha256']}  {sealed['file']}\n"
        assert hashlib.sha256((outbox / sealed["file"]).read_bytes()).hexdigest() == sealed["sha256"]
    finally:
        feeds.stop()


def test_a_compression_bomb_is_cut_at_fifty_times_its_size(tmp_path, password_hash, keys):
    """100 MB of zeros compress to about 100 KB: decrypted whole it would fill state_dir's disk."""
    from daemon.runs import openpgp

    feeds = importing(tmp_path, password_hash, decrypt_key_file=str(keys["secret"]))
    bomb = keys["partner"].run("--recipient", "dropd@example.org", "--encrypt",
                               data=(CONTACTS_HEADER + "\n").encode() + bytes(100_000_000))  # fmt: skip
    assert len(bomb) * openpgp.MAX_EXPANSION < openpgp.MIN_PLAINTEXT_LIMIT < 100_000_000
    feeds.upload("northfield", "/imports/StudentData_1.csv.pgp", bomb)
    [run] = feeds.runs()
    assert run["status"] == "failed" and run["reason"].startswith(
        f"decrypt-failed: the file decrypts to more than {openpgp.MIN_PLAINTEXT_LIMIT:,} bytes"
    )
    assert feeds.contacts("northfield") == {}
    feeds.stop()
