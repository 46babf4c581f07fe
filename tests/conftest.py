"""Fixtures: the real daemon in a temporary root, a password hash, a client key."""

import pytest

from daemon.dropzone.passwords import hash_password
from tests.helpers import PASSWORD, ClientKey, DropdProcess, InProcessFeeds, PostgresServer


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


@pytest.fixture(scope="session")
def postgresql():
    """One PostgreSQL server for the whole session (about 3 s to start)."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def feeds_on_each_store(tmp_path, password_hash, request):
    """The feed half in-process (`InProcessFeeds`), once on SQLite and once on PostgreSQL."""
    feeds = InProcessFeeds(tmp_path, password_hash)
    if request.param == "postgresql":
        feeds.use_postgresql(request.getfixturevalue("postgresql"))
    yield feeds
    feeds.stop()
