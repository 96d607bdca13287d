"""What a route answers, independent of the server that sends it: the request as the routes
see it, and the reply (status, content type, body, extra headers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

from exporter.exposition import Column, Piece, join

TEXT = "text/plain; charset=utf-8"


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    # Header names in lower case; a repeated header keeps its last value.
    headers: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Pieces:
    """A body kept as the pieces it is made of, written to the client a batch at a time and
    never joined whole: at 10,000 checks /metrics is 40 MB, and one joined copy of it, with
    the copies asyncio's transport makes of a large write, cost over 100 MB per scrape."""

    pieces: Sequence[Piece]
    length: int

    @classmethod
    def of(cls, pieces: Sequence[Piece]) -> Pieces:
        return cls(pieces, sum(map(len, pieces)))

    def joined(self) -> bytes:
        return join(self.pieces)

    def batches(self, size: int) -> Iterator[bytes]:
        """The body in order, in batches of about `size` bytes, each one join of the text
        before it and a column's slices; a piece of that size or more is passed on as it is
        rather than copied."""
        batch: list[bytes] = []
        pending = 0
        for piece in self.pieces:
            if type(piece) is bytes:
                if not batch and len(piece) >= size:
                    yield piece
                    continue
                batch.append(piece)
                pending += len(piece)
            else:
                assert isinstance(piece, Column)
                for text, length in piece.slices(size):
                    if batch and pending + length > 2 * size:
                        # A large slice (a check with many lines) goes out on its own.
                        yield b"".join(batch)
                        batch, pending = [], 0
                    if batch:
                        batch += text
                    else:
                        batch = text
                    pending += length
                    if pending >= size:
                        yield b"".join(batch)
                        batch, pending = [], 0
                continue
            if pending >= size:
                yield b"".join(batch)
                batch, pending = [], 0
        if batch:
            yield b"".join(batch)


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes | Pieces
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
