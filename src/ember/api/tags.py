"""Tag operations on ``/2017-03-31/tags/{Resource}``: ListTags (GET), TagResource (POST),
UntagResource (DELETE, ``?tagKeys=a&tagKeys=b``). Parsing and rules live in
``control.tags``; this edge only reads the request and shapes the answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ember.api.http import json_response, parse_json_object
from ember.control.tags import FunctionTags


class TagsApi:
    """Scope: one per server."""

    def __init__(self, tags: FunctionTags) -> None:
        self._tags = tags

    async def list(self, request: Request, _body: bytes) -> Response:
        return json_response({"Tags": self._tags.list(request.path_params["resource"])})

    async def tag(self, request: Request, body: bytes) -> Response:
        await self._tags.tag(request.path_params["resource"], parse_json_object(body))
        return Response(status_code=204)

    async def untag(self, request: Request, _body: bytes) -> Response:
        keys = request.query_params.getlist("tagKeys")
        await self._tags.untag(request.path_params["resource"], keys)
        return Response(status_code=204)
