"""Who may log in: partner accounts, allow lists, and bans after repeated failures.

Both servers ask the same `Gatekeeper`, so a partner's password, keys, allow list and the
failure count of an address mean the same thing over SFTP and FTPS. Replacing the partner
table on reload keeps the failure and ban history.
"""

import threading
import time
from collections import deque

import paramiko
import structlog

from daemon.config import SecuritySettings
from daemon.partner_config import Partner
from daemon.passwords import verify_password, verify_unknown_user

log = structlog.get_logger("dropd.gatekeeper")


class LoginRefused(Exception):
    """A login was refused; the message is for logs (never sent to the client)."""


class BanList:
    """Failed logins per source address within a window; an address over the limit is banned."""

    def __init__(self, settings: SecuritySettings, clock=time.monotonic):
        self.settings = settings
        self._clock = clock
        self._failures: dict[str, deque] = {}
        self._banned_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def is_banned(self, address: str) -> bool:
        with self._lock:
            until = self._banned_until.get(address)
            if until is None:
                return False
            if self._clock() >= until:
                del self._banned_until[address]
                return False
            return True

    def record_failure(self, address: str) -> bool:
        """Count one failure; return True when this failure bans the address."""
        now = self._clock()
        with self._lock:
            failures = self._failures.setdefault(address, deque())
            failures.append(now)
            while failures and failures[0] <= now - self.settings.window:
                failures.popleft()
            if len(failures) < self.settings.max_failures:
                return False
            del self._failures[address]
            self._banned_until[address] = now + self.settings.ban
        log.warning("address.banned", remote=address, seconds=self.settings.ban)
        return True

    def record_success(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


class Gatekeeper:
    def __init__(self, partners: dict[str, Partner], bans: BanList):
        self.partners = partners
        self.bans = bans

    def _partner_for(self, username: str, address: str) -> Partner:
        partner = self.partners.get(username)
        if partner is None:
            raise LoginRefused("unknown user")
        if not partner.enabled:
            raise LoginRefused("partner is disabled")
        if not partner.allows(address):
            raise LoginRefused("address not in the partner's allow_from")
        return partner

    def check_password(self, username: str, password: str, address: str) -> Partner:
        try:
            partner = self._partner_for(username, address)
        except LoginRefused:
            verify_unknown_user(password)
            raise
        if partner.password_hash is None or not verify_password(partner.password_hash, password):
            raise LoginRefused("wrong password")
        return partner

    def check_key(self, username: str, key: paramiko.PKey, address: str) -> Partner:
        partner = self._partner_for(username, address)
        if not any(key == allowed for allowed in partner.authorized_keys):
            raise LoginRefused("key not in the partner's authorized_keys")
        return partner

    def auth_methods(self, username: str) -> list[str]:
        partner = self.partners.get(username)
        if partner is None:
            return ["password", "publickey"]
        methods = ["publickey"] if partner.authorized_keys else []
        return methods + (["password"] if partner.password_hash else [])

    def refused(self, protocol: str, username: str, address: str, reason: str) -> None:
        log.warning("login.failed", protocol=protocol, user=username, remote=address, reason=reason)
        self.bans.record_failure(address)

    def accepted(self, protocol: str, partner: Partner, address: str, method: str) -> None:
        log.info("login.succeeded", protocol=protocol, partner=partner.name, remote=address, method=method)
        self.bans.record_success(address)

