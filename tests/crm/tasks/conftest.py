"""Fixtures shared by the task backbone tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm.tasks.handlers import HandlerRegistry, registry


@pytest.fixture
def handlers() -> Iterator[HandlerRegistry]:
    """The global registry; handlers and periodic jobs added by the test are removed after it."""
    before = set(registry._handlers)
    jobs = dict(registry._jobs)
    yield registry
    for name in set(registry._handlers) - before:
        registry.remove(name)
    registry._jobs.clear()
    registry._jobs.update(jobs)
