"""A probe's CPU is bounded: a peer that sends its body in 1-byte chunks gets a network
verdict within a few milliseconds of work, and cannot pin the event loop so that a
neighbouring check's timeout stretches (measured on the old code: a 500 ms tcp check took
1.21 s beside such a peer, and the chunked check itself overran to `error`)."""

from __future__ import annotations

import asyncio

from exporter.probeenv import ProbeEnv
from exporter.probes import run_check
from exporter.verdicts import Verdict
from peers import webservers

NEIGHBOUR_TIMEOUT = 0.5


async def test_a_one_byte_chunk_peer_gets_http_error_and_leaves_a_neighbours_timing_alone() -> None:
    with (
        webservers.serve(webservers.http_handler()) as port,
        webservers.blackhole() as silent,
    ):
        loaded = webservers.config(
            [
                {
                    "name": "chunks",
                    "kind": "http",
                    "target": f"http://127.0.0.1:{port}/one-byte-chunks",
                    "timeout": "2s",
                },
                {
                    "name": "neighbour",
                    "kind": "tcp",
                    "target": f"{silent}:80",
                    "timeout": f"{int(NEIGHBOUR_TIMEOUT * 1000)}ms",
                },
            ]
        )
        env = ProbeEnv(loaded)
        try:
            chunked, neighbour = await asyncio.gather(
                *(run_check(check, env) for check in loaded.checks())
            )
        finally:
            await env.aclose()
    assert neighbour.verdict is Verdict.TCP_TIMEOUT, neighbour.detail
    assert neighbour.duration < NEIGHBOUR_TIMEOUT + 0.15, neighbour.duration
    assert chunked.verdict is Verdict.HTTP_ERROR, chunked.detail
    assert "protocol events" in chunked.detail
    assert chunked.duration < 1.0  # cut off by the event budget, not by the timeout
