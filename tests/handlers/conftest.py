"""The feed kinds' tests run in-process against the store, once per store backend."""

import pytest

from tests.helpers import InProcessFeeds


@pytest.fixture(params=["sqlite", "postgresql"])
def dropd(tmp_path, password_hash, request):
    feeds = InProcessFeeds(tmp_path, password_hash)
    if request.param == "postgresql":
        feeds.use_postgresql(request.getfixturevalue("postgresql"))
    yield feeds
    feeds.stop()
