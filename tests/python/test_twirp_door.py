"""LiveKit's own Python server SDK (PyPI ``livekit-api``) against the gateway binary's Twirp
door, with a caller key of its own (``api_key`` + ``api_secret_file`` in the policy file): as
a service would use the gateway after changing LIVEKIT_URL, LIVEKIT_API_KEY and
LIVEKIT_API_SECRET."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from livekit import api
from livekit.protocol import egress

from proxy_harness import start_proxy

SDK_KEY = "APIpythonsdk"
SDK_SECRET = "python-sdk-secret-0123456789abcdef"
ROOM = "py-room"


def caller_policy(directory: Path) -> Path:
    """A policy file whose one caller is this SDK's key, allowed the ``py-*`` rooms."""
    secret = directory / "sdk.secret"
    secret.write_text(SDK_SECRET + "\n")
    policy = directory / "policy.toml"
    policy.write_text(
        f"""
[auth]
mode = "bearer"

[[callers]]
name = "python-sdk"
api_key = "{SDK_KEY}"
api_secret_file = "{secret}"
policy = "recording"

[policies.recording]
rpcs = ["*"]
rooms = ["py-*"]
"""
    )
    return policy


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    policy = caller_policy(tmp_path_factory.mktemp("twirp-door"))
    running = start_proxy("--dev", "--policy-file", str(policy))
    yield running
    assert running.stop() == 0


def run(gateway, scenario, secret: str = SDK_SECRET):
    """Runs ``scenario(lkapi)`` with LiveKit's SDK pointed at the gateway."""

    async def main():
        url = f"http://{gateway.address}"
        async with api.LiveKitAPI(url, SDK_KEY, secret) as lkapi:
            return await scenario(lkapi)

    return asyncio.run(main())


def rtmp(url: str) -> egress.StreamOutput:
    return egress.StreamOutput(protocol=egress.StreamProtocol.RTMP, urls=[url])


def test_every_egress_method_works_through_the_gateway(gateway):
    async def scenario(lkapi):
        eg = lkapi.egress
        rc = await eg.start_room_composite_egress(
            egress.RoomCompositeEgressRequest(
                room_name=ROOM,
                layout="grid",
                stream_outputs=[rtmp("rtmp://live.example.com/app/key")],
            )
        )
        web = await eg.start_web_egress(
            egress.WebEgressRequest(
                url="https://example.com", segment_outputs=[egress.SegmentedFileOutput()]
            )
        )
        participant = await eg.start_participant_egress(
            egress.ParticipantEgressRequest(
                room_name=ROOM,
                identity="bob",
                file_outputs=[egress.EncodedFileOutput(filepath="bob.mp4")],
            )
        )
        track_composite = await eg.start_track_composite_egress(
            egress.TrackCompositeEgressRequest(
                room_name=ROOM,
                video_track_id="TR_v",
                image_outputs=[egress.ImageOutput(filename_prefix="img")],
            )
        )
        track = await eg.start_track_egress(
            egress.TrackEgressRequest(
                room_name=ROOM, track_id="TR_a", websocket_url="wss://sink.example.com"
            )
        )
        unified = await eg.start_egress(
            egress.StartEgressRequest(
                room_name=ROOM,
                template=egress.TemplateSource(layout="speaker"),
                outputs=[egress.Output(stream=rtmp("rtmp://u.example.com/live/key"))],
            )
        )
        for info in [rc, web, participant, track_composite, track, unified]:
            assert info.egress_id.startswith("EG_")
        assert rc.room_name == ROOM
        assert rc.room_composite.layout == "grid"

        await asyncio.sleep(0.6)
        updated = await eg.update_layout(
            egress.UpdateLayoutRequest(egress_id=rc.egress_id, layout="single-speaker")
        )
        assert updated.room_composite.layout == "single-speaker"
        streamed = await eg.update_stream(
            egress.UpdateStreamRequest(
                egress_id=rc.egress_id, add_output_urls=["rtmp://new.example.com/live"]
            )
        )
        assert "rtmp://new.example.com/live" in [s.url for s in streamed.stream_results]

        listed = await eg.list_egress(egress.ListEgressRequest(room_name=ROOM))
        assert rc.egress_id in [i.egress_id for i in listed.items]
        stopped = await eg.stop_egress(egress.StopEgressRequest(egress_id=rc.egress_id))
        assert stopped.egress_id == rc.egress_id

    run(gateway, scenario)
    # The same audit line as a gRPC call's, naming the caller by its key's entry and the door.
    audit = [line for line in gateway.log_lines if "audit: egress call" in line]
    assert any(
        'caller="python-sdk" door="twirp" rpc="StopEgress"' in line and "outcome=Ok" in line
        for line in audit
    ), "\n".join(audit)


def test_a_policy_denial_surfaces_as_the_sdk_surfaces_livekits_errors(gateway):
    async def scenario(lkapi):
        with pytest.raises(api.TwirpError) as denied:
            await lkapi.egress.start_room_composite_egress(
                egress.RoomCompositeEgressRequest(
                    room_name="finance", stream_outputs=[rtmp("rtmp://live.example.com/app/k")]
                )
            )
        assert denied.value.code == api.TwirpErrorCode.PERMISSION_DENIED
        assert denied.value.status == 403
        assert "policies.recording.rooms" in denied.value.message
        assert denied.value.metadata["rule"] == "policies.recording.rooms"

        # LiveKit's own errors arrive as LiveKit wrote them.
        with pytest.raises(api.TwirpError) as not_found:
            await lkapi.egress.stop_egress(egress.StopEgressRequest(egress_id="EG_doesnotexist"))
        assert not_found.value.code == api.TwirpErrorCode.NOT_FOUND
        assert not_found.value.status == 404

    run(gateway, scenario)


def test_a_wrong_secret_is_a_401(gateway):
    async def scenario(lkapi):
        with pytest.raises(api.TwirpError) as refused:
            await lkapi.egress.list_egress(egress.ListEgressRequest())
        # Plain text, as LiveKit's auth middleware answers: the SDK finds no Twirp code.
        assert refused.value.status == 401
        assert refused.value.code == "unknown"

    run(gateway, scenario, secret="not-the-secret-but-just-as-long-0123456")


def test_json_as_nodes_sdk_sends_it(gateway):
    """Twirp JSON in camelCase (what LiveKit's Node SDK sends), signed with the caller key."""
    token = (
        api.AccessToken(SDK_KEY, SDK_SECRET)
        .with_grants(api.VideoGrants(room_record=True))
        .to_jwt()
    )
    request = urllib.request.Request(
        f"http://{gateway.address}/twirp/livekit.Egress/ListEgress",
        data=json.dumps({"roomName": ROOM, "somethingNew": True}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        body = json.loads(response.read())
    assert isinstance(body["items"], list)

    # Without a token: the plain-text 401.
    request = urllib.request.Request(
        f"http://{gateway.address}/twirp/livekit.Egress/ListEgress",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    assert refused.value.headers["Content-Type"].startswith("text/plain")


def post_list_egress(gateway, token: str) -> urllib.request.Request:
    return urllib.request.Request(
        f"http://{gateway.address}/twirp/livekit.Egress/ListEgress",
        data=egress.ListEgressRequest(room_name=ROOM).SerializeToString(),
        headers={"Content-Type": "application/protobuf", "Authorization": f"Bearer {token}"},
        method="POST",
    )


def test_an_expired_token_is_a_401(gateway):
    """A token the SDK minted with its own AccessToken, expired past LiveKit's minute of leeway."""
    expired = (
        api.AccessToken(SDK_KEY, SDK_SECRET)
        .with_grants(api.VideoGrants(room_record=True))
        .with_ttl(datetime.timedelta(minutes=-2))
        .to_jwt()
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post_list_egress(gateway, expired), timeout=10)
    assert refused.value.code == 401
    assert refused.value.read().decode() == "invalid token, error: token has expired"

    # The same token, fresh, is accepted: only the expiry was wrong.
    fresh = (
        api.AccessToken(SDK_KEY, SDK_SECRET)
        .with_grants(api.VideoGrants(room_record=True))
        .to_jwt()
    )
    with urllib.request.urlopen(post_list_egress(gateway, fresh), timeout=10) as response:
        assert response.status == 200


def test_a_deadline_ends_a_start_livekit_would_hold(sim_factory, tmp_path):
    """No egress worker: LiveKit keeps a Start waiting about 20 s. The SDK sends no deadline
    header, so the gateway's --upstream-timeout bounds the call, and the SDK surfaces it as
    it surfaces LiveKit's own Twirp errors."""
    sim = sim_factory("--no-egress-workers")
    proxy = start_proxy(
        "--upstream-timeout",
        "400ms",
        "--policy-file",
        str(caller_policy(tmp_path)),
        env={
            "LIVEKIT_URL": sim.url,
            "LIVEKIT_API_KEY": sim.api_key,
            "LIVEKIT_API_SECRET": sim.api_secret,
        },
    )
    try:

        async def scenario(lkapi):
            started = time.monotonic()
            with pytest.raises(api.TwirpError) as ended:
                await lkapi.egress.start_room_composite_egress(
                    egress.RoomCompositeEgressRequest(
                        room_name=ROOM, stream_outputs=[rtmp("rtmp://live.example.com/app/k")]
                    )
                )
            return ended.value, time.monotonic() - started

        error, elapsed = run(proxy, scenario)
        assert error.code == api.TwirpErrorCode.DEADLINE_EXCEEDED, error
        assert error.status == 408
        assert elapsed < 5, elapsed
        # LiveKit was told the same budget.
        sent = [r for r in sim.requests() if r.get("rpc") == "StartRoomCompositeEgress"]
        assert len(sent) == 1, sim.requests()
        assert int(sent[0]["headers"]["x-twirp-timeout-ms"]) <= 400, sent[0]["headers"]
    finally:
        assert proxy.stop() == 0
