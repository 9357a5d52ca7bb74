"""The proxy driven by Python grpcio with LiveKit's own message classes (PyPI livekit-protocol),
not stubs generated from our proto/: proof that a LiveKit-built client works unchanged."""

from __future__ import annotations

import base64

import grpc
import pytest
from livekit.protocol import egress

from proxy_harness import start_proxy

SERVICE = "/livekit.Egress/"


@pytest.fixture(scope="module")
def proxy():
    running = start_proxy("--dev")
    yield running
    assert running.stop() == 0


@pytest.fixture()
def channel(proxy):
    with grpc.insecure_channel(proxy.address) as ch:
        yield ch


def call(channel, method, request, response_type, **kwargs):
    rpc = channel.unary_unary(
        SERVICE + method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )
    return rpc(request, timeout=10, **kwargs)


def test_start_update_list_stop(channel):
    info = call(
        channel,
        "StartRoomCompositeEgress",
        egress.RoomCompositeEgressRequest(
            room_name="py-room",
            layout="grid",
            file_outputs=[egress.EncodedFileOutput(filepath="py.mp4")],
        ),
        egress.EgressInfo,
    )
    assert info.egress_id.startswith("EG_")
    assert info.room_name == "py-room"

    web = call(
        channel,
        "StartWebEgress",
        egress.WebEgressRequest(
            url="https://example.com",
            stream_outputs=[egress.StreamOutput(urls=["rtmp://example.com/live/key"])],
        ),
        egress.EgressInfo,
    )
    assert web.egress_id.startswith("EG_")

    participant = call(
        channel,
        "StartParticipantEgress",
        egress.ParticipantEgressRequest(
            room_name="py-room",
            identity="bob",
            file_outputs=[egress.EncodedFileOutput(filepath="bob.mp4")],
        ),
        egress.EgressInfo,
    )
    assert participant.room_name == "py-room"

    composite = call(
        channel,
        "StartTrackCompositeEgress",
        egress.TrackCompositeEgressRequest(
            room_name="py-room",
            audio_track_id="TR_a",
            file_outputs=[egress.EncodedFileOutput(filepath="a.ogg")],
        ),
        egress.EgressInfo,
    )
    assert composite.room_name == "py-room"

    track = call(
        channel,
        "StartTrackEgress",
        egress.TrackEgressRequest(room_name="py-room", track_id="TR_a", websocket_url="wss://sink.example.com"),
        egress.EgressInfo,
    )
    assert track.room_name == "py-room"

    unified = call(
        channel,
        "StartEgress",
        egress.StartEgressRequest(
            room_name="py-room",
            template=egress.TemplateSource(layout="grid"),
            outputs=[egress.Output(file=egress.FileOutput(filepath="u.mp4"))],
        ),
        egress.EgressInfo,
    )
    assert unified.egress_id.startswith("EG_")

    updated = call(
        channel,
        "UpdateLayout",
        egress.UpdateLayoutRequest(egress_id=info.egress_id, layout="speaker"),
        egress.EgressInfo,
    )
    assert updated.egress_id == info.egress_id

    streamed = call(
        channel,
        "UpdateStream",
        egress.UpdateStreamRequest(egress_id=web.egress_id, add_output_urls=["rtmp://b.example.com/k"]),
        egress.EgressInfo,
    )
    assert streamed.egress_id == web.egress_id

    listed = call(channel, "ListEgress", egress.ListEgressRequest(room_name="py-room"), egress.ListEgressResponse)
    ids = {item.egress_id for item in listed.items}
    assert {info.egress_id, participant.egress_id, composite.egress_id, track.egress_id, unified.egress_id} <= ids
    assert web.egress_id not in ids

    stopped = call(channel, "StopEgress", egress.StopEgressRequest(egress_id=info.egress_id), egress.EgressInfo)
    assert stopped.egress_id == info.egress_id
    # Stopped while still starting, LiveKit aborts it; once active, it ends.
    assert stopped.status in (egress.EGRESS_ENDING, egress.EGRESS_COMPLETE, egress.EGRESS_ABORTED)


def test_not_found_keeps_code_and_message(channel):
    with pytest.raises(grpc.RpcError) as err:
        call(channel, "StopEgress", egress.StopEgressRequest(egress_id="EG_missing"), egress.EgressInfo)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # The open-source server's text, as the --dev simulator imitates it.
    assert err.value.details() == "twirp error unknown: egress does not exist"
    trailing = dict(err.value.trailing_metadata() or ())
    assert "x-request-id" in trailing


def test_unknown_field_reaches_livekit_byte_for_byte(sim):
    # A field from a newer LiveKit schema (number 999, length-delimited, "new") appended to a
    # valid request. The proxy forwards bytes untouched, so the simulator must see them all.
    proxy = start_proxy(env={"LIVEKIT_URL": sim.url, "LIVEKIT_API_KEY": sim.api_key, "LIVEKIT_API_SECRET": sim.api_secret})
    try:
        body = egress.ListEgressRequest(room_name="py-room").SerializeToString() + bytes([0xBA, 0x3E, 0x03]) + b"new"
        with grpc.insecure_channel(proxy.address) as ch:
            rpc = ch.unary_unary(SERVICE + "ListEgress")
            raw = rpc(body, timeout=10)
        egress.ListEgressResponse.FromString(raw)
        sent = [r for r in sim.requests() if r.get("rpc") == "ListEgress"]
        assert sent, sim.requests()
        assert base64.b64decode(sent[-1]["body"]) == body
    finally:
        assert proxy.stop() == 0


def test_deadline_exceeded_is_reported(channel):
    rpc = channel.unary_unary(
        SERVICE + "ListEgress",
        request_serializer=egress.ListEgressRequest.SerializeToString,
        response_deserializer=egress.ListEgressResponse.FromString,
    )
    # A deadline that has passed before the call can reach anything.
    with pytest.raises(grpc.RpcError) as err:
        rpc(egress.ListEgressRequest(), timeout=0.000001)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_huge_twirp_error_still_reaches_grpcio_as_not_found(sim):
    # grpc-core clients refuse response metadata over 8 KiB and then report RESOURCE_EXHAUSTED
    # instead of the real code. LiveKit's msg and meta are unbounded: a 4 KiB msg and 300 meta
    # keys must still arrive as NOT_FOUND, because the proxy bounds what goes into trailers.
    meta = {f"key_{i:03}": f"value-{i}" for i in range(300)}
    sim.add_faults({"kind": "twirp_error", "code": "not_found", "msg": "m" * 4096, "meta": meta, "method": "StopEgress"})
    proxy = start_proxy(env={"LIVEKIT_URL": sim.url, "LIVEKIT_API_KEY": sim.api_key, "LIVEKIT_API_SECRET": sim.api_secret})
    try:
        with grpc.insecure_channel(proxy.address) as ch:
            with pytest.raises(grpc.RpcError) as err:
                call(ch, "StopEgress", egress.StopEgressRequest(egress_id="EG_x"), egress.EgressInfo)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value
        details = err.value.details()
        assert details.startswith("mmmm") and details.endswith("[truncated]"), details[-40:]
        trailing = dict(err.value.trailing_metadata() or ())
        assert trailing["twirp-code"] == "not_found"
        assert "twirp-meta-key_000" in trailing
    finally:
        assert proxy.stop() == 0
