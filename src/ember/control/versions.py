"""Published versions: what a snapshot of ``$LATEST`` holds, and what a qualifier names. Pure.

A version is a ``FunctionRecord`` with ``version = "<n>"``: ``$LATEST``'s configuration and
code at the moment of publishing (its description replaced by PublishVersion's, if given),
its own RevisionId, and no later change. Numbers come from ``$LATEST.last_version`` + 1, so
a deleted version's number is never handed out again.

"Unchanged since the last publish" (PublishVersion then answers the last version instead of
a new one, as Lambda does) means: the last published version still exists and carries the
same code and the same ``last_modified`` as ``$LATEST`` (every code or configuration change
of ``$LATEST`` sets a new ``last_modified``; lifecycle steps and publishing do not).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import replace

from ember.errors import InvalidParameterValueException, PreconditionFailedException
from ember.model.functions import LATEST, FunctionRecord, State, UpdateStatus

_NUMBER = re.compile(r"[0-9]+")

REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


def is_version_number(qualifier: str) -> bool:
    """``"1"``, ``"42"``: a published version (anything else but $LATEST is an alias)."""
    return _NUMBER.fullmatch(qualifier) is not None


def check_preconditions(
    latest: FunctionRecord, code_sha256: str | None, revision_id: str | None
) -> None:
    """PublishVersion's optional CodeSha256 / RevisionId, in AWS's order and words."""
    if revision_id and revision_id != latest.revision_id:
        raise PreconditionFailedException(REVISION_MISMATCH)
    current = latest.code.sha256_b64
    if code_sha256 and code_sha256 != current:
        raise InvalidParameterValueException(
            f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
            f"({current}). Please try again with the CodeSHA256 in $LATEST."
        )


def unchanged(latest: FunctionRecord, previous: FunctionRecord | None) -> bool:
    """Whether ``previous`` (the last published version, if it exists) equals ``latest``."""
    return (
        previous is not None
        and previous.last_modified == latest.last_modified
        and previous.code == latest.code
    )


def snapshot(latest: FunctionRecord, number: int, description: str | None) -> FunctionRecord:
    """Version ``number`` of ``latest``: Active if $LATEST is, else Pending until it settles."""
    config = (
        latest.config if description is None else replace(latest.config, description=description)
    )
    record = replace(
        latest,
        version=str(number),
        config=config,
        revision_id=str(uuid.uuid4()),
        last_version=0,
        last_update_status=UpdateStatus.SUCCESSFUL,
        last_update_status_reason=None,
        last_update_status_reason_code=None,
    )
    if latest.state is State.ACTIVE and latest.last_update_status is not UpdateStatus.IN_PROGRESS:
        return record
    return replace(
        record,
        state=State.PENDING,
        state_reason="The function is being created.",
        state_reason_code="Creating",
    )


def settled(version: FunctionRecord) -> FunctionRecord:
    """A Pending version once its code is in place."""
    return replace(
        version,
        state=State.ACTIVE,
        state_reason=None,
        state_reason_code=None,
        revision_id=str(uuid.uuid4()),
    )


def ordered(latest: FunctionRecord, versions: Iterable[FunctionRecord]) -> list[FunctionRecord]:
    """ListVersionsByFunction's order: $LATEST, then the versions by number."""
    assert latest.version == LATEST
    return [latest, *sorted(versions, key=lambda v: int(v.version))]
