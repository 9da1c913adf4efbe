"""The SQS edge: awsJson1.0 (``POST /``, ``X-Amz-Target: AmazonSQS.<Operation>``).

One endpoint for every SQS operation, signed for the ``sqs`` service. Errors leave in
SQS's query-compatible JSON shape (``__type`` body + ``x-amzn-query-error``), which is
what botocore's SQS parser reads; ``SqsError`` subclasses carry that shape themselves,
and any other ``EmberError`` (authentication, size) is rendered the same way here.
Queue operations live in this module; message operations in ``api/sqs_messages.py``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ember.api.http import REQUEST_ID, Authenticator
from ember.api.sqs_messages import MessageOperations, queue_name, string_list
from ember.errors import (
    ClientError,
    EmberError,
    InvalidAttributeName,
    ServiceException,
    SqsError,
    SqsInvalidParameterValue,
    SqsUnknownOperation,
)
from ember.events.queue_config import (
    COMPUTED,
    SETTABLE,
    check_attributes,
    check_queue_name,
    check_tags,
)
from ember.events.queues import QueueService

log = logging.getLogger("ember.api.sqs")

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
MAX_SQS_REQUEST_BYTES = 4 * 1024 * 1024  # far above any valid request (a 256 KiB batch)
SqsOperation = Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]


class SqsApi:
    """Scope: one per server; stateless over the ``QueueService``."""

    def __init__(self, queues: QueueService, auth: Authenticator) -> None:
        self._queues = queues
        self._auth = auth
        messages = MessageOperations(queues)
        self._operations: dict[str, SqsOperation] = {
            "CreateQueue": self.create_queue,
            "GetQueueUrl": self.get_queue_url,
            "ListQueues": self.list_queues,
            "DeleteQueue": self.delete_queue,
            "PurgeQueue": self.purge_queue,
            "GetQueueAttributes": self.get_queue_attributes,
            "SetQueueAttributes": self.set_queue_attributes,
            "TagQueue": self.tag_queue,
            "UntagQueue": self.untag_queue,
            "ListQueueTags": self.list_queue_tags,
            "ListDeadLetterSourceQueues": self.list_dead_letter_source_queues,
            **messages.table(),
        }

    async def endpoint(self, request: Request) -> Response:
        try:
            _check_length(request)
            body = await request.body()
            self._auth.check(request, body, "sqs")
            result = await self._dispatch(request, body)
            response = Response(json.dumps(result), 200, media_type=CONTENT_TYPE)
        except EmberError as error:
            response = sqs_error_response(error)
        except Exception:
            log.exception("internal error in SQS %s", request.headers.get("x-amz-target"))
            response = sqs_error_response(ServiceException("An internal error occurred."))
        response.headers[REQUEST_ID] = str(uuid.uuid4())
        return response

    async def _dispatch(self, request: Request, body: bytes) -> dict[str, Any]:
        target = request.headers.get("x-amz-target", "")
        operation = self._operations.get(target.removeprefix(TARGET_PREFIX))
        if not target.startswith(TARGET_PREFIX) or operation is None:
            raise SqsUnknownOperation(f"The action {target or '(none)'} is not valid.")
        try:
            params = json.loads(body or b"{}")
        except ValueError as exc:
            raise SqsInvalidParameterValue("The request body is not valid JSON.") from exc
        if not isinstance(params, dict):
            raise SqsInvalidParameterValue("The request body must be a JSON object.")
        return await operation(request, params)

    def _url(self, request: Request, name: str) -> str:
        return f"{str(request.base_url).rstrip('/')}/{self._queues.account}/{name}"

    async def create_queue(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._queues.create(
            check_queue_name(params.get("QueueName")),
            check_attributes(params.get("Attributes")),
            check_tags(params.get("tags")),
        )
        return {"QueueUrl": self._url(request, config.name)}

    async def get_queue_url(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        name = str(params.get("QueueName", ""))
        return {"QueueUrl": self._url(request, self._queues.get(name).name)}

    async def list_queues(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        names = self._queues.names(str(params.get("QueueNamePrefix", "")))
        limit = params.get("MaxResults")
        if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= 1000):
            raise SqsInvalidParameterValue(
                f"Value {limit} for parameter MaxResults is invalid. Reason: Must be between "
                "1 and 1000."
            )
        token = str(params.get("NextToken") or "0")
        start = int(token) if token.isdigit() else 0
        page = names[start : start + limit] if limit else names[start:]
        result: dict[str, Any] = {"QueueUrls": [self._url(request, n) for n in page]}
        if limit and start + limit < len(names):
            result["NextToken"] = str(start + limit)
        return result

    async def tag_queue(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        await self._queues.set_tags(queue_name(params), check_tags(params.get("Tags")), [])
        return {}

    async def untag_queue(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        await self._queues.set_tags(queue_name(params), {}, string_list(params, "TagKeys"))
        return {}

    async def list_queue_tags(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        tags = self._queues.get(queue_name(params)).tags
        return {"Tags": tags} if tags else {}

    async def list_dead_letter_source_queues(
        self, request: Request, params: dict[str, Any]
    ) -> dict[str, Any]:
        sources = self._queues.dead_letter_sources(queue_name(params))
        return {"queueUrls": [self._url(request, n) for n in sources]}

    async def delete_queue(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        await self._queues.delete(queue_name(params))
        return {}

    async def purge_queue(self, _request: Request, params: dict[str, Any]) -> dict[str, Any]:
        await self._queues.purge(queue_name(params))
        return {}

    async def set_queue_attributes(
        self, _request: Request, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = queue_name(params)
        self._queues.get(name)
        await self._queues.set_attributes(name, check_attributes(params.get("Attributes")))
        return {}

    async def get_queue_attributes(
        self, _request: Request, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = queue_name(params)
        self._queues.get(name)
        wanted = string_list(params, "AttributeNames")
        known = SETTABLE | COMPUTED
        for attribute in wanted:
            if attribute != "All" and attribute not in known:
                raise InvalidAttributeName(f"Unknown Attribute {attribute}.")
        everything = self._all_attributes(name)
        if "All" in wanted:
            return {"Attributes": everything}
        picked = {k: v for k, v in everything.items() if k in wanted}
        return {"Attributes": picked} if picked else {}

    def _all_attributes(self, name: str) -> dict[str, str]:
        config = self._queues.get(name)
        counts = self._queues.counts(name)
        defaults = {
            "DelaySeconds": str(config.delay_seconds),
            "MaximumMessageSize": str(config.max_message_bytes),
            "MessageRetentionPeriod": str(config.retention_s),
            "ReceiveMessageWaitTimeSeconds": str(config.receive_wait_s),
            "VisibilityTimeout": str(config.visibility_timeout),
            "SqsManagedSseEnabled": "false",
        }
        return {
            "QueueArn": self._queues.arn(name),
            "ApproximateNumberOfMessages": str(counts["visible"]),
            "ApproximateNumberOfMessagesNotVisible": str(counts["in_flight"]),
            "ApproximateNumberOfMessagesDelayed": str(counts["delayed"]),
            "CreatedTimestamp": str(int(config.created_at)),
            "LastModifiedTimestamp": str(int(config.modified_at)),
            **defaults,
            **config.attributes,
        }


def _check_length(request: Request) -> None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_SQS_REQUEST_BYTES:
        raise SqsInvalidParameterValue("The request is too large.")


def sqs_error_response(error: EmberError) -> Response:
    """Any Ember error in SQS's shape; ``SqsError``s bring their own body and headers."""
    if isinstance(error, SqsError):
        body, headers = error.body(), error.headers()
    else:
        fault = "Sender" if isinstance(error, ClientError) else "Receiver"
        body = {"__type": f"com.amazonaws.sqs#{error.code}", "message": error.message}
        headers = {"x-amzn-query-error": f"{error.code};{fault}", **error.headers()}
    headers["x-amzn-ErrorType"] = error.code
    return Response(json.dumps(body), error.status, headers, media_type=CONTENT_TYPE)
