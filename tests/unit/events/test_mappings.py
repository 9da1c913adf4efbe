"""The mapping service: validation against functions and queues, Lambda's states,
persistence, and pollers that follow the settled state (also after a reopen)."""

from __future__ import annotations

from typing import Any

import pytest

from ember.errors import (
    InvalidParameterValueException,
    ResourceConflictException,
    ResourceNotFoundException,
)
from ember.events.mappings import MappingService
from ember.events.poller import MappingPoller
from ember.events.queues import QueueService
from ember.events.store import EventsStore
from ember.model.arns import function_arn
from ember.model.functions import CodeInfo, FunctionConfig, FunctionRecord, State
from ember.testing import ManualClock
from tests.unit.events.conftest import ACCOUNT, REGION, text, until
from tests.unit.events.test_poller import ScriptedFunction, ok


class Functions:
    """A ``FunctionDirectory`` with the names it was given, all Active."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def get(self, name: str, qualifier: str | None = None) -> FunctionRecord:
        if name not in self.names or qualifier not in (None, "$LATEST"):
            raise ResourceNotFoundException(f"Function not found: {self.arn(name)}")
        return FunctionRecord(
            name=name,
            config=FunctionConfig("python3.11", "app.handler", "role"),
            code=CodeInfo("0" * 64, "", 0),
            revision_id="r",
            last_modified=0.0,
            state=State.ACTIVE,
        )

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(REGION, ACCOUNT, name, qualifier)


def service(
    store: EventsStore, queues: QueueService, clock: ManualClock, function: ScriptedFunction
) -> MappingService:
    return MappingService(
        store,
        queues,
        Functions("f"),
        lambda mapping: MappingPoller(mapping, queues, function, clock),
        clock,
    )


@pytest.fixture
async def source(queues: QueueService) -> str:
    await queues.create("q", {})
    return queues.arn("q")


async def test_states_follow_requests(
    store: EventsStore, queues: QueueService, clock: ManualClock, source: str
) -> None:
    function = ScriptedFunction(ok)
    mappings = service(store, queues, clock, function)
    created = await mappings.create({"EventSourceArn": source, "FunctionName": "f"})
    assert created.state == "Creating"
    await until(lambda: mappings.get(created.uuid).state == "Enabled")
    await queues.send("q", [text("one")])
    await until(lambda: function.bodies == ["one"])
    disabled = await mappings.update(created.uuid, {"Enabled": False})
    assert disabled.state == "Disabling"
    await until(lambda: mappings.get(created.uuid).state == "Disabled")
    assert mappings.statistics()["pollers"] == {}
    assert (await mappings.update(created.uuid, {"Enabled": True})).state == "Enabling"
    await until(lambda: mappings.get(created.uuid).state == "Enabled")
    assert (await mappings.update(created.uuid, {"BatchSize": 5})).state == "Updating"
    await until(lambda: mappings.get(created.uuid).state == "Enabled")
    assert mappings.get(created.uuid).batch_size == 5
    assert (await mappings.delete(created.uuid)).state == "Deleting"
    await until(lambda: mappings.list(None, None) == [])
    assert await store.load_mappings() == []
    await mappings.close()


async def test_requests_are_checked(
    store: EventsStore, queues: QueueService, clock: ManualClock, source: str
) -> None:
    mappings = service(store, queues, clock, ScriptedFunction(ok))
    bad: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"EventSourceArn": source, "FunctionName": "nope"}, ResourceNotFoundException),
        ({"EventSourceArn": source}, InvalidParameterValueException),
        (
            {"EventSourceArn": queues.arn("gone"), "FunctionName": "f"},
            InvalidParameterValueException,
        ),
        (
            {"EventSourceArn": "arn:aws:kinesis:x", "FunctionName": "f"},
            InvalidParameterValueException,
        ),
    ]
    for body, error in bad:
        with pytest.raises(error):
            await mappings.create(body)
    await mappings.create({"EventSourceArn": source, "FunctionName": "f"})
    with pytest.raises(ResourceConflictException):
        await mappings.create(
            {"EventSourceArn": source, "FunctionName": function_arn(REGION, ACCOUNT, "f")}
        )
    with pytest.raises(ResourceNotFoundException):
        mappings.get("missing")
    await mappings.close()


async def test_pollers_resume_after_a_reopen(
    store: EventsStore, queues: QueueService, clock: ManualClock, source: str
) -> None:
    before = service(store, queues, clock, ScriptedFunction(ok))
    enabled = await before.create({"EventSourceArn": source, "FunctionName": "f"})
    await until(lambda: before.get(enabled.uuid).state == "Enabled")
    await before.close()
    await queues.send("q", [text("after restart")])
    function = ScriptedFunction(ok)
    after = service(store, queues, clock, function)
    await after.load()
    await until(lambda: function.bodies == ["after restart"])
    assert after.get(enabled.uuid).state == "Enabled"
    await after.close()
