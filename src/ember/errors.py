"""The one exception hierarchy of Ember.

Every exception the platform raises on purpose is defined here, nowhere else::

    EmberError
    ├── ClientError               the caller's fault: rendered as a 4xx AWS-shaped error
    │   ├── ResourceNotFoundException          404
    │   ├── ProvisionedConcurrencyConfigNotFoundException  404
    │   ├── InvalidParameterValueException     400
    │   ├── InvalidRequestContentException     400
    │   ├── ValidationException                400 (unmodelled in botocore, still surfaced)
    │   ├── ResourceConflictException          409
    │   ├── ResourceInUseException             400
    │   ├── PreconditionFailedException        412
    │   ├── RequestEntityTooLargeException     413 (the wire name; the model says RequestTooLarge)
    │   ├── UnsupportedMediaTypeException      415
    │   ├── TooManyRequestsException           429 (+ Reason, Retry-After)
    │   ├── UnknownOperationException          404 (no route)
    │   ├── SqsError                           400, SQS's shape (``__type`` + x-amzn-query-error)
    │   │   └── QueueDoesNotExist, ReceiptHandleIsInvalid, … (one per botocore SQS shape)
    │   └── AuthError                          403
    │       ├── MissingAuthenticationTokenException
    │       ├── UnrecognizedClientException
    │       ├── InvalidSignatureException
    │       └── AccessDeniedException
    └── PlatformError             Ember's fault: rendered as a 5xx
        ├── ServiceException                   500
        ├── InvalidRuntimeException            502 (runtime not installed here)
        ├── SandboxError                       a sandbox backend failed (start, channel, kill)
        └── InitFailed                         an environment initialised ahead failed its init

API errors carry their wire contract as class attributes: ``code`` (the
``x-amzn-ErrorType`` header and botocore's error code), ``status`` (HTTP status) and
``message_field`` (``message`` or ``Message``: the member spelling of botocore's model).
One renderer in ``api/`` turns them into responses; nothing else builds error JSON.
"""

from __future__ import annotations

from typing import ClassVar


class EmberError(Exception):
    """Root of every deliberate Ember exception."""

    code: ClassVar[str] = "ServiceException"
    status: ClassVar[int] = 500
    message_field: ClassVar[str] = "Message"
    error_type: ClassVar[str] = "Service"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        """The JSON body AWS sends for this error (botocore reads ``Type`` and the message)."""
        return {"Type": self.error_type, self.message_field: self.message}

    def headers(self) -> dict[str, str]:
        """Extra response headers beyond ``x-amzn-ErrorType`` (e.g. ``Retry-After``)."""
        return {}


class ClientError(EmberError):
    """The caller sent something wrong; state is left as it was."""

    status = 400
    error_type = "User"


class ResourceNotFoundException(ClientError):
    code = "ResourceNotFoundException"
    status = 404


class ProvisionedConcurrencyConfigNotFoundException(ClientError):
    code = "ProvisionedConcurrencyConfigNotFoundException"
    status = 404
    message_field = "message"


class InvalidParameterValueException(ClientError):
    code = "InvalidParameterValueException"
    message_field = "message"


class InvalidRequestContentException(ClientError):
    code = "InvalidRequestContentException"
    message_field = "message"


class ValidationException(ClientError):
    code = "ValidationException"


class ResourceConflictException(ClientError):
    code = "ResourceConflictException"
    status = 409
    message_field = "message"


class ResourceInUseException(ClientError):
    """The resource is busy with another change (e.g. an event source mapping being deleted)."""

    code = "ResourceInUseException"
    message_field = "message"


class PreconditionFailedException(ClientError):
    code = "PreconditionFailedException"
    status = 412
    message_field = "message"


class RequestEntityTooLargeException(ClientError):
    code = "RequestEntityTooLargeException"
    status = 413


class UnsupportedMediaTypeException(ClientError):
    code = "UnsupportedMediaTypeException"
    status = 415
    message_field = "message"


class TooManyRequestsException(ClientError):
    """A throttle: ``Reason`` names which limit, ``Retry-After`` when to come back."""

    code = "TooManyRequestsException"
    status = 429
    message_field = "message"

    def __init__(
        self, reason: str, message: str = "Rate Exceeded.", retry_after_s: int = 1
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, str]:
        return {**super().body(), "Reason": self.reason}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class UnknownOperationException(ClientError):
    """No operation lives at this method and path."""

    code = "UnknownOperationException"
    status = 404


class AuthError(ClientError):
    """The request is not authenticated as the admin (SigV4)."""

    code = "AccessDeniedException"
    status = 403


class MissingAuthenticationTokenException(AuthError):
    code = "MissingAuthenticationTokenException"


class UnrecognizedClientException(AuthError):
    code = "UnrecognizedClientException"


class InvalidSignatureException(AuthError):
    code = "InvalidSignatureException"


class AccessDeniedException(AuthError):
    code = "AccessDeniedException"


class PlatformError(EmberError):
    """Ember failed; the caller did nothing wrong."""


class ServiceException(PlatformError):
    code = "ServiceException"


class InvalidRuntimeException(PlatformError):
    """The function's runtime is not (or no longer) installed on this server."""

    code = "InvalidRuntimeException"
    status = 502


class SandboxError(PlatformError):
    """A sandbox backend could not start, talk to, or stop an environment."""


class InitFailed(PlatformError):
    """An environment initialised ahead (provisioned concurrency) failed its init;
    ``init_error`` is the error type (``Runtime.ImportModuleError``, ``Sandbox.Timedout``)."""

    def __init__(self, init_error: str) -> None:
        super().__init__(f"the function's init failed: {init_error}")
        self.init_error = init_error


# --- SQS (the built-in queue service) ------------------------------------------------
# SQS speaks awsJson1.0 with query-compatible errors: the body's ``__type`` names the
# botocore shape, and ``x-amzn-query-error: <query code>;Sender`` carries the code that
# boto3 reports as ``Error.Code`` (and maps to ``client.exceptions.<shape>``).


class SqsError(ClientError):
    """A client error of the SQS protocol; ``code`` is botocore's shape name."""

    code = "InvalidParameterValueException"
    query_code: ClassVar[str] = "InvalidParameterValue"
    message_field = "message"

    def body(self) -> dict[str, str]:
        return {"__type": f"com.amazonaws.sqs#{self.code}", "message": self.message}

    def headers(self) -> dict[str, str]:
        return {"x-amzn-query-error": f"{self.query_code};Sender"}


class SqsInvalidParameterValue(SqsError):
    code = "InvalidParameterValueException"
    query_code = "InvalidParameterValue"


class SqsMissingParameter(SqsError):
    code = "MissingParameter"
    query_code = "MissingParameter"


class SqsUnknownOperation(SqsError):
    code = "UnknownOperationException"
    query_code = "InvalidAction"


class QueueDoesNotExist(SqsError):
    code = "QueueDoesNotExist"
    query_code = "AWS.SimpleQueueService.NonExistentQueue"


class QueueNameExists(SqsError):
    code = "QueueNameExists"
    query_code = "QueueAlreadyExists"


class QueueDeletedRecently(SqsError):
    code = "QueueDeletedRecently"
    query_code = "AWS.SimpleQueueService.QueueDeletedRecently"


class ReceiptHandleIsInvalid(SqsError):
    code = "ReceiptHandleIsInvalid"
    query_code = "ReceiptHandleIsInvalid"


class MessageNotInflight(SqsError):
    code = "MessageNotInflight"
    query_code = "AWS.SimpleQueueService.MessageNotInflight"


class TooManyEntriesInBatchRequest(SqsError):
    code = "TooManyEntriesInBatchRequest"
    query_code = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"


class EmptyBatchRequest(SqsError):
    code = "EmptyBatchRequest"
    query_code = "AWS.SimpleQueueService.EmptyBatchRequest"


class BatchEntryIdsNotDistinct(SqsError):
    code = "BatchEntryIdsNotDistinct"
    query_code = "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"


class InvalidBatchEntryId(SqsError):
    code = "InvalidBatchEntryId"
    query_code = "AWS.SimpleQueueService.InvalidBatchEntryId"


class BatchRequestTooLong(SqsError):
    code = "BatchRequestTooLong"
    query_code = "AWS.SimpleQueueService.BatchRequestTooLong"


class InvalidAttributeName(SqsError):
    code = "InvalidAttributeName"
    query_code = "InvalidAttributeName"


class InvalidAttributeValue(SqsError):
    code = "InvalidAttributeValue"
    query_code = "InvalidAttributeValue"


class InvalidMessageContents(SqsError):
    code = "InvalidMessageContents"
    query_code = "InvalidMessageContents"


class PurgeQueueInProgress(SqsError):
    code = "PurgeQueueInProgress"
    query_code = "AWS.SimpleQueueService.PurgeQueueInProgress"


class SqsUnsupportedOperation(SqsError):
    """Also the answer to a FIFO queue: Ember's queues are standard queues only."""

    code = "UnsupportedOperation"
    query_code = "AWS.SimpleQueueService.UnsupportedOperation"
