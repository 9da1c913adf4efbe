"""Queue-service fixtures: a real events store in a temporary directory, a manual clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ember.events.queues import OutgoingMessage, QueueService
from ember.events.store import EventsStore
from ember.testing import ManualClock

REGION, ACCOUNT = "us-east-1", "000000000000"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventsStore]:
    opened = await EventsStore.open(tmp_path / "events.db")
    yield opened
    await opened.close()


@pytest.fixture
async def queues(store: EventsStore, clock: ManualClock) -> QueueService:
    service = QueueService(store, clock, REGION, ACCOUNT)
    await service.load()
    return service


def text(body: str, delay: int | None = None) -> OutgoingMessage:
    return OutgoingMessage(body, {}, {}, delay)


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for a condition that other tasks (or aiosqlite's thread) make true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)
