"""What a route answers, independent of the server that sends it: the request as the routes
see it, and the reply (status, content type, body, extra headers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

TEXT = "text/plain; charset=utf-8"


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    # Header names in lower case; a repeated header keeps its last value.
    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, text: str, *headers: tuple[str, str]) -> Reply:
        return cls(status, TEXT, text.encode(), headers)

    @classmethod
    def of(cls, answer: Reply | tuple[int, str, bytes]) -> Reply:
        """A page handler's answer, given as a Reply or as (status, content type, body)."""
        if isinstance(answer, Reply):
            return answer
        status, content_type, body = answer
        return cls(status, content_type, body)
