"""OpenPGP for feeds: decrypting (and verifying) what partners send, encrypting what we send.

GnuPG through python-gnupg: GnuPG is the implementation partners' own tools are tested
against (and a Debian package every server has), python-gnupg a small, kept wrapper that
streams files through it. pysequoia would need a Rust build here and holds whole messages
in memory.

Every use gets a private keyring: a fresh temporary GNUPGHOME (mode 0700, in $TMPDIR: the
gpg-agent's socket lives in it, and a socket path is limited to 107 bytes, which a deep
state_dir passes) holding only the keys the feed names, removed with its agent when the use
ends; never the service user's home. Passphrases go to gpg on a pipe, never on a command line or in a log.
Plaintext is written to an unnamed file (O_TMPFILE) in `state_dir`: it has no name while it
exists and its blocks are freed when the run closes it, so no plaintext is left on disk.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import gnupg

ENCRYPTED_SUFFIXES = (".pgp", ".gpg", ".asc")
MAX_EXPANSION = 50
"""A decrypted file may be at most this many times the size of the encrypted one (CSV
compresses 7-10x; a compression bomb, 1,000x and more, would fill state_dir's disk)."""
MIN_PLAINTEXT_LIMIT = 64 * 1024 * 1024
"""...or this many bytes, for small files."""


class OpenPgpFailed(Exception):
    """Decrypting, verifying or encrypting failed; `code` is the run's reason code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def is_encrypted_name(name: str) -> bool:
    return name.lower().endswith(ENCRYPTED_SUFFIXES)


def inner_name(name: str) -> str:
    """The name a decrypted file is imported under: `list.csv.pgp` -> `list.csv`."""
    return name[: name.rfind(".")] if is_encrypted_name(name) else name


def _secret(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8").rstrip("\r\n") if path is not None else None


@contextlib.contextmanager
def keyring():
    """A `gnupg.GPG` over a private, empty keyring, removed (with its gpg-agent) afterwards."""
    home = tempfile.mkdtemp(prefix="dropd-gnupg-")
    try:
        yield gnupg.GPG(gnupghome=home)
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, timeout=30, check=False)
        shutil.rmtree(home, ignore_errors=True)


def _import(gpg: gnupg.GPG, key_file: Path, what: str, code: str, passphrase: str | None = None) -> str:
    """The fingerprint of the (first) key in `key_file`, imported into `gpg`."""
    try:
        data = key_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OpenPgpFailed(code, f"{what} {key_file} cannot be read: {exc}") from None
    result = gpg.import_keys(data, passphrase=passphrase) if passphrase else gpg.import_keys(data)
    if not result.fingerprints:
        raise OpenPgpFailed(code, f"{what} {key_file} holds no OpenPGP key gpg can import")
    return result.fingerprints[0]


def decrypt(
    fd: int, state_dir: Path, key_file: Path, passphrase_file: Path | None, verify_key_file: Path | None
) -> int:
    """The plaintext of the encrypted file open at `fd`, as a new descriptor of an unnamed file
    in `state_dir` (the caller closes it). OpenPgpFailed: `decrypt-failed`, or `bad-signature`
    when `verify_key_file` is given and the file is not signed by that key."""
    passphrase = _secret(passphrase_file)
    plain = os.open(state_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        with keyring() as gpg:
            _import(gpg, key_file, "decrypt_key_file", "decrypt-failed", passphrase)
            signer = _import(gpg, verify_key_file, "verify_key_file", "bad-signature") if verify_key_file else None
            limit = max(MAX_EXPANSION * os.fstat(fd).st_size, MIN_PLAINTEXT_LIMIT)
            with os.fdopen(os.dup(fd), "rb") as ciphertext:
                ciphertext.seek(0)
                result = gpg.decrypt_file(
                    ciphertext, passphrase=passphrase, output=f"/proc/{os.getpid()}/fd/{plain}", always_trust=True,
                    extra_args=["--max-output", str(limit)],
                )  # fmt: skip
        if "max-output" in (result.stderr or ""):
            raise OpenPgpFailed(
                "decrypt-failed",
                f"the file decrypts to more than {limit:,} bytes, {MAX_EXPANSION} times its own size: a compression "
                "bomb, or a file compressed far more than CSV can be; nothing applied",
            )
        if not result.ok:
            raise OpenPgpFailed("decrypt-failed", _why(result))
        if signer is not None and not (result.valid and signer in (result.fingerprint, result.pubkey_fingerprint)):
            found = f"signed by {result.fingerprint}" if result.fingerprint else "not signed"
            raise OpenPgpFailed(
                "bad-signature", f"the file is {found}, not by the key in verify_key_file ({signer}); nothing applied"
            )
        return plain
    except BaseException:
        os.close(plain)
        raise


def _why(result) -> str:
    status = result.status or "gpg gave no reason"
    if status in ("no secret key", "decryption failed"):
        return f"{status}: the file was not encrypted to the key in decrypt_key_file, or is damaged"
    if "passphrase" in status:
        return f"{status}: check decrypt_passphrase_file"
    if status == "no data was provided":
        return "the file is not OpenPGP data (encrypted with gpg --encrypt, binary or --armor)"
    return status


def encrypt(
    source: Path, target: Path, key_file: Path, sign_key_file: Path | None, sign_passphrase_file: Path | None
) -> None:
    """`source` encrypted to the key in `key_file` (signed with `sign_key_file` when given) as
    binary OpenPGP at `target`. OpenPgpFailed (`encrypt-failed`) says why not."""
    passphrase = _secret(sign_passphrase_file)
    with keyring() as gpg:
        recipient = _import(gpg, key_file, "encrypt_key_file", "encrypt-failed")
        signer = _import(gpg, sign_key_file, "sign_key_file", "encrypt-failed", passphrase) if sign_key_file else None
        with open(source, "rb") as plain:
            result = gpg.encrypt_file(
                plain, [recipient], sign=signer, passphrase=passphrase, armor=False, output=str(target),
                always_trust=True,
            )  # fmt: skip
    if not result.ok:
        raise OpenPgpFailed("encrypt-failed", f"gpg could not encrypt the export: {result.status or 'no reason given'}")
