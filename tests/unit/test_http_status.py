"""The one HTTP status classifier, and the one POST, against real local sockets."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from alerting.http import classify, post

CASES = [
    (200, (), "ok", "ok"),  # Slack answers 200 "ok"
    (202, (), "ok", "ok"),  # PagerDuty answers 202 Accepted
    (204, (), "ok", "ok"),  # a webhook with nothing to say
    (429, (), "retry", "rate_limited"),  # PagerDuty/Slack throttling: wait and retry
    (500, (), "retry", "server_error"),  # the receiver broke; it may recover
    (502, (), "retry", "server_error"),  # a proxy in front of it could not reach it
    (503, (), "retry", "server_error"),  # down for maintenance
    (400, (), "permanent", "client_error"),  # our body is wrong; resending will not fix it
    (401, (), "permanent", "client_error"),  # bad credentials stay bad
    (403, (), "permanent", "client_error"),  # Slack's revoked or disabled webhook
    (404, (), "permanent", "client_error"),  # wrong URL, or a deleted Slack channel
    (413, (), "permanent", "client_error"),  # body too large, and it will not shrink
    (409, (409,), "retry", "server_error"),  # a channel's extra retry code is honoured
    (408, (409,), "permanent", "client_error"),  # extra codes are per channel, not global
    (302, (), "permanent", "unexpected_status"),  # redirects are not followed
]


@pytest.mark.parametrize(("status", "retry_on", "kind", "reason"), CASES)
def test_classify(status: int, retry_on: tuple[int, ...], kind: str, reason: str) -> None:
    outcome = classify(status, retry_on)
    assert (outcome.kind, outcome.reason, outcome.status) == (kind, reason, status)


async def _post_to_silent_server() -> tuple[str, str, str]:
    """A server that accepts the connection, reads the request and never answers."""

    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            out = await post(session, f"http://127.0.0.1:{port}/hook", b"{}", timeout_s=0.2)
    finally:
        server.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()
    return out.kind, out.reason, out.detail


def test_post_to_a_server_that_never_answers_is_a_retryable_timeout() -> None:
    assert asyncio.run(_post_to_silent_server()) == ("retry", "timeout", "no answer in 0.2s")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _post_to_closed_port(port: int) -> tuple[str, str, int | None]:
    async with aiohttp.ClientSession() as session:
        out = await post(session, f"http://127.0.0.1:{port}/hook", b"{}", timeout_s=2)
    return out.kind, out.reason, out.status


def test_post_to_a_closed_port_is_a_retryable_connection_error() -> None:
    assert asyncio.run(_post_to_closed_port(_closed_port())) == ("retry", "connection", None)


def test_post_detail_never_names_the_url() -> None:
    secret_path = "/services/T000/B000/very-secret-token"
    url = f"http://127.0.0.1:{_closed_port()}{secret_path}"

    async def go() -> str:
        async with aiohttp.ClientSession() as session:
            return (await post(session, url, b"{}", timeout_s=2)).detail

    assert "very-secret-token" not in asyncio.run(go())
