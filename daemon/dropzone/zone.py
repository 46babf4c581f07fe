"""What the protocol servers may ask of the daemon, and nothing more.

The SFTP and FTP servers get a `DropZone`, never the daemon: admission of a connection,
the gatekeeper (logins and their outcomes), whether an address is banned, the per-connection
attempt limit, rate-limited refusal logging, and a `PartnerSession` for a logged-in partner.
A reload swaps the gatekeeper and the security settings here; sessions already open keep the
partner they logged in as.
"""

import os
from collections.abc import Callable
from pathlib import Path

from daemon.config.partners import Partner
from daemon.config.settings import SecuritySettings
from daemon.dropzone.gatekeeper import BanList, Connections, Gatekeeper, RateLimitedLog
from daemon.dropzone.handoff import UploadHandoff
from daemon.dropzone.quota import Quotas
from daemon.dropzone.sessions import PartnerSession
from daemon.dropzone.uploads import TransferCounter


class DropZone:
    def __init__(
        self, drop_root: Path, security: SecuritySettings, gatekeeper: Gatekeeper, bans: BanList,
        connections: Connections, refusals: RateLimitedLog, handoff: UploadHandoff, transfers: TransferCounter,
        feed_folders: Callable[[Partner], dict[Path, str]] = lambda partner: {},
    ):  # fmt: skip
        self.drop_root = drop_root
        self.security = security
        self.gatekeeper = gatekeeper
        self.bans = bans
        self.connections = connections
        self.refusals = refusals
        """`refusals(event, address, reason, **fields)`: a refused connection, logged at most once a while per address."""
        self.handoff = handoff
        self.transfers = transfers
        self.feed_folders = feed_folders
        self.quotas = Quotas(drop_root)
        """The folders a partner's feeds use, which its sessions may not rename or remove."""

    def reconfigure(self, security: SecuritySettings, gatekeeper: Gatekeeper) -> None:
        self.security = security
        self.gatekeeper = gatekeeper

    def admit(self, remote: str, protocol: str):
        """A ticket for a new connection, or None when it must be refused (limits, bans)."""
        return self.connections.admit(remote, protocol)

    def is_banned(self, address: str) -> bool:
        return self.bans.is_banned(address)

    @property
    def max_auth_attempts(self) -> int:
        return self.security.max_auth_attempts

    def knows(self, username: str) -> bool:
        return username in self.gatekeeper.partners

    def home_of(self, partner: Partner) -> Path:
        return self.drop_root / partner.name

    def open_session(self, partner: Partner, protocol: str, remote: str) -> PartnerSession:
        home = self.home_of(partner)
        os.makedirs(home, mode=0o750, exist_ok=True)
        return PartnerSession(
            partner, home, protocol, remote, self.handoff, self.transfers, self.feed_folders(partner), self.quotas
        )
