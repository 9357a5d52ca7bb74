"""The egress simulator driven by LiveKit's own Python server SDK (PyPI ``livekit-api``), which
speaks Twirp protobuf, and by a Node-style Twirp JSON (camelCase) call made with ``urllib``."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request

import pytest
from livekit import api
from livekit.protocol import egress, models


def run(coroutine_function, sim, *args):
    """Runs ``coroutine_function(lkapi, *args)`` with a LiveKitAPI pointed at ``sim``."""

    async def main():
        async with api.LiveKitAPI(sim.url, sim.api_key, sim.api_secret) as lkapi:
            return await coroutine_function(lkapi, *args)

    return asyncio.run(main())


def rtmp(url: str) -> egress.StreamOutput:
    return egress.StreamOutput(protocol=egress.StreamProtocol.RTMP, urls=[url])


def test_start_list_update_stop(sim):
    async def scenario(lkapi):
        eg = lkapi.egress
        rc = await eg.start_room_composite_egress(
            egress.RoomCompositeEgressRequest(
                room_name="py-room",
                layout="grid",
                stream_outputs=[rtmp("rtmp://live.example.com/app/key")],
                file_outputs=[egress.EncodedFileOutput(filepath="py/{room_name}.mp4")],
            )
        )
        web = await eg.start_web_egress(
            egress.WebEgressRequest(
                url="https://example.com", segment_outputs=[egress.SegmentedFileOutput()]
            )
        )
        participant = await eg.start_participant_egress(
            egress.ParticipantEgressRequest(
                room_name="py-room",
                identity="bob",
                file_outputs=[egress.EncodedFileOutput(filepath="bob.mp4")],
            )
        )
        track_composite = await eg.start_track_composite_egress(
            egress.TrackCompositeEgressRequest(
                room_name="py-room",
                video_track_id="TR_v",
                image_outputs=[egress.ImageOutput(filename_prefix="img")],
            )
        )
        track = await eg.start_track_egress(
            egress.TrackEgressRequest(
                room_name="py-room", track_id="TR_a", websocket_url="wss://sink.example.com"
            )
        )
        unified = await eg.start_egress(
            egress.StartEgressRequest(
                room_name="py-room",
                template=egress.TemplateSource(layout="speaker"),
                outputs=[egress.Output(stream=rtmp("rtmp://u.example.com/live/key"))],
            )
        )
        started = [rc, web, participant, track_composite, track, unified]
        for info in started:
            assert info.egress_id.startswith("EG_") and len(info.egress_id) == 15
            assert info.status == egress.EgressStatus.EGRESS_STARTING
        assert rc.room_id.startswith("RM_") and participant.room_id == rc.room_id
        assert rc.WhichOneof("request") == "room_composite"
        assert rc.room_composite.layout == "grid"
        assert unified.WhichOneof("request") == "egress"
        assert track.stream_results[0].url == "wss://sink.example.com"

        listed = await eg.list_egress(egress.ListEgressRequest())
        assert len(listed.items) == 6
        assert not listed.HasField("next_page_token")
        in_room = await eg.list_egress(egress.ListEgressRequest(room_name="py-room"))
        assert len(in_room.items) == 5

        updated = await eg.update_layout(
            egress.UpdateLayoutRequest(egress_id=rc.egress_id, layout="single-speaker")
        )
        assert updated.room_composite.layout == "single-speaker"
        streamed = await eg.update_stream(
            egress.UpdateStreamRequest(
                egress_id=rc.egress_id,
                add_output_urls=["rtmp://new.example.com/live"],
                remove_output_urls=["rtmp://live.example.com/app/key"],
            )
        )
        active = [
            s.url for s in streamed.stream_results if s.status == egress.StreamInfo.Status.ACTIVE
        ]
        assert active == ["rtmp://new.example.com/live"]

        await asyncio.sleep(0.3)
        one = await eg.list_egress(egress.ListEgressRequest(egress_id=rc.egress_id, active=True))
        assert [i.status for i in one.items] == [egress.EgressStatus.EGRESS_ACTIVE]

        stopped = await eg.stop_egress(egress.StopEgressRequest(egress_id=rc.egress_id))
        assert stopped.status == egress.EgressStatus.EGRESS_ENDING
        await asyncio.sleep(0.3)
        done = await eg.list_egress(egress.ListEgressRequest(egress_id=rc.egress_id))
        assert done.items[0].status == egress.EgressStatus.EGRESS_COMPLETE
        assert done.items[0].ended_at > 0

    run(scenario, sim)

    # What the SDK sent, as the simulator recorded it.
    log = sim.requests()
    assert len(log) == 13
    for entry in log:
        assert entry["content_type"] == "application/protobuf"
        assert entry["headers"]["user-agent"].startswith("livekit-server-sdk-python/")
        assert entry["claims"]["iss"] == sim.api_key
        assert entry["claims"]["video"]["roomRecord"] is True
        # The token itself is never stored.
        assert json.loads(entry["headers"]["authorization"])["iss"] == sim.api_key
    first = egress.RoomCompositeEgressRequest.FromString(base64.b64decode(log[0]["body"]))
    assert first.room_name == "py-room"


def test_errors_reach_the_sdk_as_twirp_errors(sim):
    async def scenario(lkapi):
        eg = lkapi.egress
        with pytest.raises(api.TwirpError) as not_found:
            await eg.stop_egress(egress.StopEgressRequest(egress_id="EG_doesnotexist"))
        assert not_found.value.code == api.TwirpErrorCode.NOT_FOUND
        # The open-source server's rewrite of the IO service's error.
        assert not_found.value.message == "twirp error unknown: egress does not exist"
        assert not_found.value.status == 404

        with pytest.raises(api.TwirpError) as invalid:
            await eg.start_room_composite_egress(
                egress.RoomCompositeEgressRequest(room_name="r")
            )
        assert invalid.value.code == "invalid_argument"
        assert invalid.value.message == (
            "twirp error unknown: request has missing or invalid field: output"
        )

        info = await eg.start_room_composite_egress(
            egress.RoomCompositeEgressRequest(room_name="r", stream_outputs=[rtmp("rtmp://x.example.com/live/key")])
        )
        # Active first (200 ms), so that it ends COMPLETE rather than ABORTED.
        await asyncio.sleep(0.3)
        await eg.stop_egress(egress.StopEgressRequest(egress_id=info.egress_id))
        await asyncio.sleep(0.25)
        with pytest.raises(api.TwirpError) as finished:
            await eg.stop_egress(egress.StopEgressRequest(egress_id=info.egress_id))
        assert finished.value.code == "failed_precondition"
        assert finished.value.message == "egress with status EGRESS_COMPLETE cannot be stopped"
        assert finished.value.status == 412

    run(scenario, sim)


def test_injected_faults_over_http(sim):
    sim.add_faults(
        {
            "kind": "twirp_error",
            "method": "ListEgress",
            "times": 1,
            "code": "unavailable",
            "msg": "no response from servers",
            "error_details": base64.b64encode(b"\x08\x0e").decode(),
        },
        {"kind": "http", "method": "StopEgress", "times": 1, "status": 502,
         "content_type": "text/html", "body": "<html>502 Bad Gateway</html>"},
    )

    async def scenario(lkapi):
        eg = lkapi.egress
        with pytest.raises(api.TwirpError) as unavailable:
            await eg.list_egress(egress.ListEgressRequest())
        assert unavailable.value.code == "unavailable"
        assert unavailable.value.status == 503
        assert unavailable.value.metadata["error_details"] == "CA4="
        # Used up: the next call is answered normally.
        assert len((await eg.list_egress(egress.ListEgressRequest())).items) == 0

        # An HTML 502 from a "proxy": the SDK finds no Twirp JSON in it.
        with pytest.raises(api.TwirpError) as bad_gateway:
            await eg.stop_egress(egress.StopEgressRequest(egress_id="EG_x"))
        assert bad_gateway.value.status == 502
        assert bad_gateway.value.code == "unknown"

    run(scenario, sim)
    assert [e["fault"] for e in sim.requests()] == ["twirp_error", None, "http"]


def _token(sim, **grants) -> str:
    return (
        api.AccessToken(sim.api_key, sim.api_secret)
        .with_grants(api.VideoGrants(**grants))
        .to_jwt()
    )


def _post(url: str, body: bytes, headers: dict):
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def test_node_style_json_camel_case(sim):
    """Node's livekit-server-sdk sends Twirp JSON with camelCase names."""
    url = f"{sim.url}/twirp/livekit.Egress/StartRoomCompositeEgress"
    body = json.dumps(
        {
            "roomName": "node-room",
            "layout": "speaker",
            "audioOnly": False,
            "fileOutputs": [{"fileType": "MP4", "filepath": "node.mp4"}],
            "streamOutputs": [{"protocol": "RTMP", "urls": ["rtmp://n.example.com/live/key"]}],
            "aFieldFromTheFuture": {"x": 1},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {_token(sim, room_record=True)}",
    }
    status, content_type, raw = _post(url, body, headers)
    assert status == 200, raw
    assert content_type == "application/json"
    info = json.loads(raw)
    assert info["egress_id"].startswith("EG_")
    assert info["room_name"] == "node-room"
    assert info["status"] == "EGRESS_STARTING"
    assert info["room_composite"]["file_outputs"][0]["filepath"] == "node.mp4"
    assert "egressId" not in info and "roomName" not in info

    stop_url = f"{sim.url}/twirp/livekit.Egress/StopEgress"
    status, content_type, raw = _post(
        stop_url, json.dumps({"egressId": info["egress_id"]}).encode(), headers
    )
    # Stopped while still starting: LiveKit's worker aborts it.
    assert status == 200 and json.loads(raw)["status"] == "EGRESS_ABORTED"

    status, content_type, raw = _post(stop_url, b'{"egress_id":"EG_nope"}', headers)
    assert (status, content_type) == (404, "application/json")
    assert json.loads(raw) == {
        "code": "not_found",
        "msg": "twirp error unknown: egress does not exist",
    }

    # Auth failures: plain-text 401 for a bad token, Twirp JSON without the grant.
    bad = dict(headers, Authorization="Bearer not.a.jwt")
    status, content_type, raw = _post(stop_url, b"{}", bad)
    assert status == 401 and content_type.startswith("text/plain")
    assert raw == b"invalid authorization token"
    no_grant = dict(headers, Authorization=f"Bearer {_token(sim, room_list=True)}")
    status, content_type, raw = _post(stop_url, b"{}", no_grant)
    assert status == 401 and content_type == "application/json"
    assert json.loads(raw) == {"code": "unauthenticated", "msg": "permissions denied"}


def test_base_url_with_path_prefix_and_cloud_pagination(sim_factory):
    prefixed = sim_factory("--prefix", "/lk", "--page-size", "2")

    async def scenario(lkapi):
        eg = lkapi.egress
        ids = []
        for _ in range(5):
            info = await eg.start_room_composite_egress(
                egress.RoomCompositeEgressRequest(room_name="p", stream_outputs=[rtmp("rtmp://p.example.com/live/key")])
            )
            ids.append(info.egress_id)
        seen, token, pages = [], None, 0
        while True:
            request = egress.ListEgressRequest()
            if token is not None:
                request.page_token.CopyFrom(token)
            page = await eg.list_egress(request)
            pages += 1
            seen.extend(i.egress_id for i in page.items)
            if not page.HasField("next_page_token"):
                break
            token = page.next_page_token
            assert pages < 10
        assert pages == 3
        assert seen == ids

    async def main():
        # The Python SDK keeps a base-URL path: requests go to /lk/twirp/livekit.Egress/...
        async with api.LiveKitAPI(
            prefixed.url + "/lk", prefixed.api_key, prefixed.api_secret
        ) as lkapi:
            await scenario(lkapi)

    asyncio.run(main())
    assert all(e["path"].startswith("/lk/twirp/livekit.Egress/") for e in prefixed.requests())

    # Without the prefix nothing serves the path: Go's plain 404, as from LiveKit's mux.
    status, content_type, raw = _post(
        f"{prefixed.url}/twirp/livekit.Egress/ListEgress",
        b"{}",
        {"Content-Type": "application/json",
         "Authorization": f"Bearer {_token(prefixed, room_record=True)}"},
    )
    assert (status, raw) == (404, b"404 page not found\n")
    assert isinstance(models.TokenPagination(token="x"), models.TokenPagination)


def test_deadline_header(sim):
    sim.add_faults({"kind": "latency", "delay_ms": 3000, "times": 1})
    started = time.monotonic()
    status, content_type, raw = _post(
        f"{sim.url}/twirp/livekit.Egress/ListEgress",
        b"{}",
        {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {_token(sim, room_record=True)}",
            "X-Twirp-Timeout-Ms": "200",
        },
    )
    elapsed = time.monotonic() - started
    assert status == 408
    assert json.loads(raw) == {
        "code": "deadline_exceeded",
        "msg": "twirp error unknown: request timed out",
    }
    assert 0.15 < elapsed < 2.5
