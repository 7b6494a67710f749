"""botframe.testing's exchange side for venue tests: LocalVenue, ScriptedVenue, ReplayScript, running_venue."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from botframe.events import HealthReason
from botframe.streams import StreamCounters
from botframe.testing import WAIT_FOR_REQUEST, LocalVenue, ReplayScript, ScriptedVenue, running_venue

pytestmark = pytest.mark.timeout(20)


async def receive(ws: ClientConnection, n: int) -> list[str]:
    return [str(await ws.recv()) for _ in range(n)]


async def test_local_venue_answers_rest_from_its_table_and_records_what_a_connection_sends() -> None:
    async with LocalVenue(rest={"/pairs?kind=spot": '["BTCUSD"]'}) as venue:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{venue.http_url}/pairs?kind=spot") as listed:
                body = await listed.text()
            async with http.get(f"{venue.http_url}/other") as missing:
                status = missing.status
        async with connect(venue.url) as ws:
            await ws.send('{"op":"subscribe"}')
            await ws.send("ping")
            await venue.wait_until(lambda: len(venue.received) == 2)

    assert (body, status) == ('["BTCUSD"]', 404)
    assert venue.connections == 1
    assert venue.requests() == [{"op": "subscribe"}, "ping"]


async def test_scripted_venue_plays_after_the_first_request_and_answers_requests_between_frames() -> None:
    def answer(request: str, sent: int) -> list[str]:
        return [f"answer to {request} after {sent}"]

    script = ["one", WAIT_FOR_REQUEST, "two"]
    async with ScriptedVenue(script, answer, replies={"ping": "pong"}, ws_path="/ws") as venue:
        assert venue.url.endswith("/ws")
        async with connect(venue.url) as ws:
            await ws.send("subscribe")
            first = await receive(ws, 1)
            await ws.send("ping")  # answered at once, outside the script
            pong = await receive(ws, 1)
            await ws.send("resubscribe")  # the script's wait
            rest = await receive(ws, 2)

    assert first == ["one"]
    assert pong == ["pong"]
    assert rest == ["answer to resubscribe after 1", "two"]
    assert venue.received == ["subscribe", "ping", "resubscribe"]


async def test_scripted_venue_gives_later_connections_their_own_script() -> None:
    async with ScriptedVenue(["first connection"], later_script=["later connection"]) as venue:
        for _ in range(2):
            async with connect(venue.url) as ws:
                await ws.send("subscribe")
                heard = await receive(ws, 1)

    assert heard == ["later connection"]
    assert venue.connections == 2


def test_replay_script_knows_which_recorded_frame_each_scripted_one_is() -> None:
    recorded = ["r0", "r1", "r2", "r3"]

    script = ReplayScript(recorded).take([0]).altered(1, "r1 altered").wait(2).extra("x").take([3])

    assert script.frames == ["r0", "r1 altered", WAIT_FOR_REQUEST, WAIT_FOR_REQUEST, "x", "r3"]
    assert script.happened(0) == []
    assert script.happened(2) == ["r0", "r1"]  # the exchange sent r1; the client got it altered
    assert script.happened(3) == ["r0", "r1"]  # an extra frame follows the last recorded one
    assert script.happened(4) == recorded  # r2 was left out, but it happened


class ReturningClient:
    """A venue client whose run() returns: a bug running_venue must report."""

    symbols: list[str] = []

    async def run(self) -> None:
        return None

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        return None

    def stream_counters(self) -> list[StreamCounters]:
        return []


class FailingClient(ReturningClient):
    async def run(self) -> None:
        raise LookupError("unknown symbol")


class RunningClient(ReturningClient):
    async def run(self) -> None:
        await asyncio.Event().wait()


async def test_running_venue_cancels_the_client_when_the_body_is_done() -> None:
    async with running_venue(RunningClient()) as client:
        await asyncio.sleep(0)

    assert isinstance(client, RunningClient)


async def test_running_venue_reports_a_client_whose_run_returned() -> None:
    with pytest.raises(AssertionError, match="returned"):
        async with running_venue(ReturningClient()):
            await asyncio.sleep(0)


async def test_running_venue_raises_what_the_client_raised() -> None:
    with pytest.raises(LookupError, match="unknown symbol"):
        async with running_venue(FailingClient()):
            await asyncio.sleep(0)


async def test_a_scripted_frame_is_sent_as_text() -> None:
    async with ScriptedVenue([json.dumps({"channel": "heartbeat"})]) as venue, connect(venue.url) as ws:
        await ws.send("subscribe")
        [frame] = await receive(ws, 1)

    assert json.loads(frame) == {"channel": "heartbeat"}
