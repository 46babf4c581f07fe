"""Fixtures: the real daemon in a temporary root, a password hash, a client key; and which
tests are slow (`tests/run.sh --quick` leaves them out)."""

import pytest

from daemon.dropzone.passwords import hash_password
from tests.helpers import PASSWORD, ClientKey, DropdProcess, InProcessFeeds, PostgresServer, SmtpSink


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def dropd(tmp_path, password_hash):
    process = DropdProcess(tmp_path, password_hash)
    yield process
    process.stop()


@pytest.fixture
def client_key(tmp_path) -> ClientKey:
    return ClientKey(tmp_path)


@pytest.fixture
def sink(tmp_path):
    """A real SMTP server (aiosmtpd) that keeps what it takes in a Maildir."""
    server = SmtpSink(tmp_path / "smtp").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgresql():
    """One PostgreSQL server for the whole session (about 3 s to start)."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def feeds_on_each_store(tmp_path, password_hash, request):
    """The feed half in-process (`InProcessFeeds`), once on SQLite and once on PostgreSQL."""
    feeds = InProcessFeeds(tmp_path, password_hash)
    if request.param == "postgresql":
        feeds.use_postgresql(request.getfixturevalue("postgresql"))
    yield feeds
    feeds.stop()


SLOW_FIXTURES = ("postgresql", "sshd")
"""Fixtures that start a real server (the daemon's own `dropd` is told apart below)."""


def pytest_collection_modifyitems(items):
    """Mark slow every test that starts the daemon as a subprocess (the root `dropd` fixture;
    tests/handlers' own `dropd` runs the feeds in-process), a real server, or systemd."""
    for item in items:
        definitions = getattr(item, "_fixtureinfo", None)
        dropd = definitions.name2fixturedefs.get("dropd", ()) if definitions else ()
        starts_daemon = any(definition.baseid in ("", "tests") for definition in dropd)
        if starts_daemon or item.get_closest_marker("systemd") or set(SLOW_FIXTURES) & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
