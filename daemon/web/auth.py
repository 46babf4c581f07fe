"""Staff logins and sessions for the web console.

A password is checked by the drop zone's own `Verifier` (argon2id, one check per address at a
time, trusted addresses first) against the same `BanList`: failures from an address count
toward one ban whether they came over SFTP, FTPS or the console, and a banned address is
refused everywhere. An unknown name costs the same check as a wrong password and gets the
same answer.

A session is a random 256-bit cookie; the store keeps only its SHA-256, the staff member, a
CSRF token and a digest of the password hash it was opened with, so that several instances
behind one proxy share sessions, a logout or expiry ends it everywhere, and changing a
staff member's password (or removing them from the config) ends theirs at the next request.
"""

import datetime
import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from daemon.clock import utc_now, utc_stamp
from daemon.config.web import StaffAccount, WebSettings
from daemon.dropzone.gatekeeper import BanList
from daemon.dropzone.passwords import CheckAbandoned, Verifier, VerifierBusy

log = structlog.get_logger("dropd.web")

FORGET_EXPIRED_EVERY = 100
"""Logins between two sweeps of expired sessions from the store."""


class LoginRefused(Exception):
    """Why a login failed, for the log; the person at the browser is told only that it failed."""


@dataclass(frozen=True)
class StaffSession:
    staff: StaffAccount
    csrf: str
    id_hash: str


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str, expected: str) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class StaffAuth:
    def __init__(self, settings: Callable[[], WebSettings], store, verifier: Verifier, bans: BanList, clock=utc_now):
        """`settings()`: `[web]` in force (a reload changes who may log in)."""
        self._settings = settings
        self._store = store
        self._verifier = verifier
        self._bans = bans
        self._clock = clock
        self._logins = 0

    def login(self, username: str, password: str, address: str) -> str:
        """A new session's cookie value, or LoginRefused (counted toward the address's ban)."""
        try:
            account = self._check(username, password, address)
        except LoginRefused as refused:
            log.warning("login.failed", protocol="web", user=username, remote=address, method="password",
                        reason=str(refused))  # fmt: skip
            if str(refused) != "banned":
                self._bans.record_failure(address)
            raise
        self._bans.record_success(address)
        token, now = new_token(), self._clock()
        expires = now + datetime.timedelta(seconds=self._settings().session_lifetime)
        with self._store.transaction(label="web") as tx:
            tx.web_sessions.open(_digest(token), account.name, new_token(), _digest(account.password_hash),
                                 utc_stamp(expires))  # fmt: skip
            self._logins += 1
            if self._logins % FORGET_EXPIRED_EVERY == 1:
                tx.web_sessions.forget_expired(utc_stamp(now))
        log.info("login.succeeded", protocol="web", staff=account.name, remote=address, method="password")
        return token

    def _check(self, username: str, password: str, address: str) -> StaffAccount:
        if self._bans.is_banned(address):
            raise LoginRefused("banned")
        account = self._settings().staff.get(username)
        hashes = (account.password_hash,) if account else ()
        priority = functools.partial(self._bans.check_priority, address)
        try:
            matches = self._verifier.matches(hashes, password, address, priority)
        except VerifierBusy as busy:
            raise LoginRefused(f"busy: {busy}") from None
        except CheckAbandoned as abandoned:
            raise LoginRefused(f"abandoned: {abandoned}") from None
        if account is None:
            raise LoginRefused("unknown user")
        if not matches:
            raise LoginRefused("wrong password")
        return account

    def session(self, token: str | None) -> StaffSession | None:
        """The live session of cookie value `token`, if any."""
        if not token or len(token) > 128:
            return None
        id_hash = _digest(token)
        with self._store.reading() as tx:
            found = tx.web_sessions.find(id_hash, utc_stamp(self._clock()))
        if found is None:
            return None
        account = self._settings().staff.get(found.staff)
        if account is None or not hmac.compare_digest(found.credential, _digest(account.password_hash)):
            return None
        return StaffSession(account, found.csrf, id_hash)

    def logout(self, session: StaffSession, address: str) -> None:
        with self._store.transaction(label="web") as tx:
            tx.web_sessions.close(session.id_hash)
        log.info("web.logged_out", staff=session.staff.name, remote=address)
