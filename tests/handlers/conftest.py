"""The feed kinds' tests run in-process against the store, once per store backend."""

import pytest

from tests.helpers import InProcessFeeds


@pytest.fixture(params=["sqlite"])
def dropd(tmp_path, password_hash, request):
    feeds = InProcessFeeds(tmp_path, password_hash, backend=request.param)
    yield feeds
    feeds.stop()
