"""Failed logins and bans kept in a store that several instances share (PostgreSQL).

An attacker who spreads guesses over the instances behind one address meets one budget:
every instance records each failure in the store and counts the address's failures there;
a ban written by one is seen by all at the address's next connection or attempt. Should the
store not answer, each instance still applies its own count and bans (`BanList`).
"""

import time

import structlog

log = structlog.get_logger("dropd.gatekeeper")


class SharedBans:
    def __init__(self, store, clock=time.time):
        self.store = store
        self._clock = clock

    def failure(self, address: str, window: float) -> int:
        now = self._clock()
        with self.store.transaction(label="logins") as tx:
            return tx.logins.failed(address, now, now - window)

    def ban(self, address: str, seconds: float) -> None:
        with self.store.transaction(label="logins") as tx:
            tx.logins.ban(address, self._clock() + seconds)

    def banned(self, address: str) -> bool:
        with self.store.reading() as tx:
            return tx.logins.banned_until(address, self._clock()) is not None

    def bans(self) -> list[tuple[str, float]]:
        with self.store.reading() as tx:
            return tx.logins.bans(self._clock())

    def unban(self, address: str) -> bool:
        with self.store.transaction(label="logins") as tx:
            return tx.logins.unban(address)
