"""The simulator behaving like LiveKit's released server (livekit v1.13.5, egress, psrpc),
driven with LiveKit's own Python server SDK (``livekit-api``): live rooms, missing egress
workers, ListEgress by id, UpdateStream's rules, the egress lifecycle and gone workers, and
``X-Twirp-Timeout-Ms`` bounding the waits. One test per behaviour."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
from livekit import api
from livekit.protocol import egress

# The open-source server (the simulator's default flavor) relays these errors from its
# internal RPC layer, which prefixes their text.
OSS = "twirp error unknown: "


def run(scenario, sim):
    """Runs ``scenario(egress_service)`` with a LiveKitAPI pointed at ``sim``."""

    async def main():
        async with api.LiveKitAPI(sim.url, sim.api_key, sim.api_secret) as lkapi:
            return await scenario(lkapi.egress)

    return asyncio.run(main())


def rtmp(*urls: str) -> egress.StreamOutput:
    return egress.StreamOutput(protocol=egress.StreamProtocol.RTMP, urls=list(urls))


def room_composite(room: str, *urls: str, file: bool = False) -> egress.RoomCompositeEgressRequest:
    return egress.RoomCompositeEgressRequest(
        room_name=room,
        layout="grid",
        stream_outputs=[rtmp(*urls)] if urls else [],
        file_outputs=[egress.EncodedFileOutput(filepath="out.mp4")] if file else [],
    )


def web() -> egress.WebEgressRequest:
    return egress.WebEgressRequest(
        url="https://example.com", file_outputs=[egress.EncodedFileOutput(filepath="w.mp4")]
    )


async def twirp_error(call) -> api.TwirpError:
    with pytest.raises(api.TwirpError) as error:
        await call
    return error.value


def post_json(sim, method: str, body: dict, timeout_ms: int | None = None):
    """A Twirp JSON call with an optional ``X-Twirp-Timeout-Ms``; (status, JSON, seconds)."""
    token = (
        api.AccessToken(sim.api_key, sim.api_secret)
        .with_grants(api.VideoGrants(room_record=True))
        .to_jwt()
    )
    request = urllib.request.Request(
        f"{sim.url}/twirp/livekit.Egress/{method}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    if timeout_ms is not None:
        request.add_header("X-Twirp-Timeout-Ms", str(timeout_ms))
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw), time.monotonic() - started


def test_strict_rooms_must_be_live_and_ending_one_ends_its_egresses(sim_factory):
    sim = sim_factory("--rooms", "strict")

    async def refused(eg):
        missing = [
            eg.start_room_composite_egress(room_composite("nowhere", "rtmp://a.example.com/live/a")),
            eg.start_participant_egress(
                egress.ParticipantEgressRequest(
                    room_name="nowhere", identity="bob", file_outputs=[egress.EncodedFileOutput()]
                )
            ),
            eg.start_track_composite_egress(
                egress.TrackCompositeEgressRequest(
                    room_name="nowhere", audio_track_id="TR_a", file_outputs=[egress.EncodedFileOutput()]
                )
            ),
            eg.start_track_egress(
                egress.TrackEgressRequest(
                    room_name="nowhere", track_id="TR_a", websocket_url="wss://sink.example.com"
                )
            ),
            eg.start_egress(
                egress.StartEgressRequest(
                    room_name="nowhere",
                    template=egress.TemplateSource(layout="grid"),
                    outputs=[egress.Output(stream=rtmp("rtmp://a.example.com/live/a"))],
                )
            ),
        ]
        for call in missing:
            error = await twirp_error(call)
            assert (error.code, error.message, error.status) == (
                "not_found",
                OSS + "requested room does not exist",
                404,
            )
        # Web egress needs no room.
        assert (await eg.start_web_egress(web())).room_id == ""

    run(refused, sim)

    room = sim.control("POST", "/sim/rooms", {"name": "live"})
    assert room["name"] == "live" and room["sid"].startswith("RM_")
    assert sim.control("GET", "/sim/rooms") == {"rooms": [room]}

    async def in_the_room(eg):
        active = await eg.start_room_composite_egress(room_composite("live", "rtmp://a.example.com/live/a"))
        assert active.room_id == room["sid"]
        await asyncio.sleep(0.3)  # ACTIVE after 200 ms
        starting = await eg.start_room_composite_egress(room_composite("live", "rtmp://b.example.com/live/b"))
        return active.egress_id, starting.egress_id

    active_id, starting_id = run(in_the_room, sim)

    ended = sim.control("DELETE", "/sim/rooms/live")
    assert ended == {"name": "live", "ended": [active_id, starting_id]}
    by_id = {e["egress_id"]: e for e in sim.egresses()}
    # The workers' sources close: LiveKit's SendEOS ends an active egress and aborts one that
    # had not started yet.
    assert by_id[active_id]["status"] == "EGRESS_ENDING"
    assert by_id[active_id]["details"] == "End reason: Source closed"
    assert by_id[starting_id]["status"] == "EGRESS_ABORTED"
    assert by_id[starting_id]["error"] == "Stop called before pipeline could start"

    async def gone(eg):
        error = await twirp_error(eg.start_room_composite_egress(room_composite("live", "rtmp://a.example.com/live/a")))
        assert error.message == OSS + "requested room does not exist"

    run(gone, sim)
    with pytest.raises(urllib.error.HTTPError) as not_live:
        sim.control("DELETE", "/sim/rooms/live")
    assert not_live.value.code == 404


def test_no_egress_worker_answers_no_response_after_the_delay(sim_factory):
    sim = sim_factory("--no-egress-workers", "--no-worker-delay", "600ms")
    assert sim.control("GET", "/sim/workers") == {"available": False}

    async def without(eg):
        started = time.monotonic()
        error = await twirp_error(eg.start_web_egress(web()))
        elapsed = time.monotonic() - started
        assert (error.code, error.message, error.status) == (
            "unavailable",
            OSS + "no response from servers",
            503,
        )
        assert 0.55 <= elapsed < 5, elapsed
        # Validation is the worker's: with no worker, an invalid request gets no answer either.
        error = await twirp_error(eg.start_web_egress(egress.WebEgressRequest()))
        assert error.code == "unavailable"

    run(without, sim)
    assert sim.egresses() == []

    assert sim.control("PUT", "/sim/workers", {"available": True}) == {"available": True}

    async def with_workers(eg):
        info = await eg.start_web_egress(web())
        assert info.status == egress.EgressStatus.EGRESS_STARTING

    run(with_workers, sim)
    # A reset restores the command line's setting.
    sim.reset()
    assert sim.control("GET", "/sim/workers") == {"available": False}


def test_list_egress_by_id_ignores_the_other_filters(sim):
    async def scenario(eg):
        one = await eg.start_room_composite_egress(room_composite("room-a", "rtmp://a.example.com/live/a"))
        await eg.start_room_composite_egress(room_composite("room-b", "rtmp://b.example.com/live/b"))
        await asyncio.sleep(0.3)
        await eg.stop_egress(egress.StopEgressRequest(egress_id=one.egress_id))
        await asyncio.sleep(0.3)  # COMPLETE: no longer active
        listed = await eg.list_egress(
            egress.ListEgressRequest(egress_id=one.egress_id, room_name="room-b", active=True)
        )
        assert [(i.egress_id, i.status) for i in listed.items] == [
            (one.egress_id, egress.EgressStatus.EGRESS_COMPLETE)
        ]
        # Without an id the filters apply.
        active_b = await eg.list_egress(egress.ListEgressRequest(room_name="room-a", active=True))
        assert list(active_b.items) == []
        error = await twirp_error(eg.list_egress(egress.ListEgressRequest(egress_id="EG_unknown")))
        assert (error.code, error.message) == ("not_found", OSS + "egress does not exist")

    run(scenario, sim)


def test_update_stream_follows_the_egress_workers_rules(sim):
    async def scenario(eg):
        file_only = await eg.start_room_composite_egress(room_composite("r", file=True))
        error = await twirp_error(
            eg.update_stream(
                egress.UpdateStreamRequest(
                    egress_id=file_only.egress_id, add_output_urls=["rtmp://x.example.com/live/x"]
                )
            )
        )
        assert (error.code, error.message) == (
            "invalid_argument",
            OSS + "UpdateStream called on non-streaming egress",
        )

        streaming = await eg.start_room_composite_egress(
            room_composite("r", "rtmp://a.example.com/live/a", "rtmp://b.example.com/live/b")
        )
        await asyncio.sleep(0.3)
        error = await twirp_error(
            eg.update_stream(
                egress.UpdateStreamRequest(
                    egress_id=streaming.egress_id, remove_output_urls=["rtmp://nope.example.com/live/nope"]
                )
            )
        )
        assert (error.code, error.message) == ("not_found", OSS + "stream rtmp://nope.example.com/live/nope not found")

        one_left = await eg.update_stream(
            egress.UpdateStreamRequest(
                egress_id=streaming.egress_id, remove_output_urls=["rtmp://a.example.com/live/a"]
            )
        )
        assert one_left.status == egress.EgressStatus.EGRESS_ACTIVE
        # Removing the last output ends the egress.
        last = await eg.update_stream(
            egress.UpdateStreamRequest(
                egress_id=streaming.egress_id, remove_output_urls=["rtmp://b.example.com/live/b"]
            )
        )
        assert last.status == egress.EgressStatus.EGRESS_ENDING
        assert last.details == "End reason: All streams stopped"
        assert all(s.status == egress.StreamInfo.Status.FINISHED for s in last.stream_results)

    run(scenario, sim)


def test_lifecycle_abort_second_stop_and_gone_worker(sim_factory):
    sim = sim_factory(complete_after_ms=2000, gone_worker_delay_ms=1000)

    async def scenario(eg):
        early = await eg.start_room_composite_egress(room_composite("r", "rtmp://a.example.com/live/a"))
        aborted = await eg.stop_egress(egress.StopEgressRequest(egress_id=early.egress_id))
        assert aborted.status == egress.EgressStatus.EGRESS_ABORTED
        assert aborted.error == "Stop called before pipeline could start"
        assert aborted.ended_at > 0

        info = await eg.start_room_composite_egress(room_composite("r", "rtmp://a.example.com/live/a"))
        await asyncio.sleep(0.3)
        ending = await eg.stop_egress(egress.StopEgressRequest(egress_id=info.egress_id))
        assert ending.status == egress.EgressStatus.EGRESS_ENDING
        again = await eg.stop_egress(egress.StopEgressRequest(egress_id=info.egress_id))
        assert again.status == egress.EgressStatus.EGRESS_ENDING

        # A worker that went away: the handler waits for it, then answers from the store.
        gone = await eg.start_room_composite_egress(room_composite("r", "rtmp://a.example.com/live/a"))
        await asyncio.sleep(0.3)
        frozen = sim.control("DELETE", f"/sim/egresses/{gone.egress_id}/worker")
        assert frozen["status"] == "EGRESS_ACTIVE"
        started = time.monotonic()
        error = await twirp_error(eg.stop_egress(egress.StopEgressRequest(egress_id=gone.egress_id)))
        assert (error.code, error.message) == ("deadline_exceeded", OSS + "request timed out")
        assert 0.9 <= time.monotonic() - started < 5
        started = time.monotonic()
        error = await twirp_error(
            eg.update_stream(
                egress.UpdateStreamRequest(egress_id=gone.egress_id, add_output_urls=["rtmp://c.example.com/live/c"])
            )
        )
        assert (error.code, error.message) == ("unavailable", OSS + "no response from servers")
        assert 0.9 <= time.monotonic() - started < 5

        # An aborted egress has no worker either: same wait, then the store's status.
        started = time.monotonic()
        error = await twirp_error(eg.stop_egress(egress.StopEgressRequest(egress_id=early.egress_id)))
        assert (error.code, error.message) == (
            "failed_precondition",
            "egress with status EGRESS_ABORTED cannot be stopped",
        )
        assert 0.9 <= time.monotonic() - started < 5

    run(scenario, sim)


def test_twirp_timeout_bounds_every_wait(sim_factory):
    sim = sim_factory("--no-egress-workers", gone_worker_delay_ms=3000)

    # The 20 s no-worker wait, cut by the caller's deadline: psrpc's retry gives up with
    # "request canceled" once the request's context is done.
    status, body, elapsed = post_json(
        sim, "StartWebEgress", {"url": "https://example.com", "file_outputs": [{}]}, 300
    )
    assert (status, body) == (408, {"code": "canceled", "msg": OSS + "request canceled"})
    assert 0.25 <= elapsed < 5, elapsed

    sim.control("PUT", "/sim/workers", {"available": True})
    status, info, _ = post_json(
        sim, "StartWebEgress", {"url": "https://example.com", "file_outputs": [{}]}
    )
    assert status == 200
    time.sleep(0.3)
    sim.control("DELETE", f"/sim/egresses/{info['egress_id']}/worker")

    # The 3 s gone-worker wait, cut at 300 ms; the store then says ACTIVE, so the RPC's own
    # error goes out.
    status, body, elapsed = post_json(sim, "StopEgress", {"egress_id": info["egress_id"]}, 300)
    assert (status, body) == (408, {"code": "canceled", "msg": OSS + "request canceled"})
    assert 0.25 <= elapsed < 2.5, elapsed

    # An unknown id: the store fallback still runs after the cut.
    status, body, elapsed = post_json(sim, "StopEgress", {"egress_id": "EG_unknown"}, 300)
    assert (status, body) == (404, {"code": "not_found", "msg": OSS + "egress does not exist"})
    assert elapsed < 2.5, elapsed

    # Store-only RPCs are not held up by the deadline.
    status, body, _ = post_json(sim, "ListEgress", {}, 1)
    assert status == 200 and len(body["items"]) == 1
