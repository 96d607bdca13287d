"""What a route answers, independent of the server that sends it: the request as the routes
see it, and the reply (status, content type, body, extra headers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence

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
        """The body in order, in batches of about `size` bytes: small pieces (headers, the
        short end of a family) joined together; a piece of that size, or a column's window
        of half of it or more, passed on as it is rather than copied again."""
        batch: list[bytes] = []
        pending = 0
        for piece in self.pieces:
            texts: Iterable[bytes]
            if isinstance(piece, Column):
                texts, alone = piece.windows(size), size // 2
            else:
                texts, alone = (piece,), size
            for text in texts:
                if len(text) >= alone:
                    if batch:
                        yield b"".join(batch)
                        batch, pending = [], 0
                    yield text
                    continue
                batch.append(text)
                pending += len(text)
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
