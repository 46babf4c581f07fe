"""The feed kinds' tests run in-process against the store, once per store backend."""

import pytest


@pytest.fixture
def dropd(feeds_on_each_store):
    return feeds_on_each_store
