"""The simulator's wire fidelity, driven by LiveKit's Python server SDK (``livekit-api``) and
plain HTTP: the open-source (``oss``) and LiveKit Cloud (``cloud``) flavors, the egress
worker's validation texts, redacted secrets, and LiveKit's HTTP front (``//`` paths, the
mux's 404, CORS preflights)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from livekit import api
from livekit.protocol import egress

RELAYED = "twirp error unknown: "
INVALID = "request has missing or invalid field: "


def run(coroutine_function, sim, *args):
    """Runs ``coroutine_function(lkapi, *args)`` with a LiveKitAPI pointed at ``sim``."""

    async def main():
        async with api.LiveKitAPI(sim.url, sim.api_key, sim.api_secret) as lkapi:
            return await coroutine_function(lkapi, *args)

    return asyncio.run(main())


def rtmp(url: str) -> egress.StreamOutput:
    return egress.StreamOutput(protocol=egress.StreamProtocol.RTMP, urls=[url])


def token(sim, **grants) -> str:
    return (
        api.AccessToken(sim.api_key, sim.api_secret)
        .with_grants(api.VideoGrants(**grants))
        .to_jwt()
    )


def http(url: str, method: str = "POST", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one request, error statuses included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


async def twirp_error(call) -> api.TwirpError:
    with pytest.raises(api.TwirpError) as raised:
        await call
    return raised.value


def test_oss_rewrites_errors_relayed_from_the_rpc_layer(sim):
    async def scenario(lkapi):
        eg = lkapi.egress
        for call in (
            eg.stop_egress(egress.StopEgressRequest(egress_id="EG_doesnotexist")),
            eg.update_layout(egress.UpdateLayoutRequest(egress_id="EG_doesnotexist", layout="x")),
            eg.update_stream(egress.UpdateStreamRequest(egress_id="EG_doesnotexist")),
        ):
            error = await twirp_error(call)
            assert (error.code, error.status) == ("not_found", 404)
            assert error.message == RELAYED + "egress does not exist"

        # Errors the Twirp handler builds itself keep their plain text.
        info = await eg.start_room_composite_egress(
            egress.RoomCompositeEgressRequest(
                room_name="r", stream_outputs=[rtmp("rtmp://h.example.com/live/key")]
            )
        )
        # Stopped once active (the simulator's start delay is 200 ms here), so it completes.
        await asyncio.sleep(0.3)
        await eg.stop_egress(egress.StopEgressRequest(egress_id=info.egress_id))
        await asyncio.sleep(0.5)
        error = await twirp_error(eg.stop_egress(egress.StopEgressRequest(egress_id=info.egress_id)))
        assert (error.code, error.status) == ("failed_precondition", 412)
        assert error.message == "egress with status EGRESS_COMPLETE cannot be stopped"

    run(scenario, sim)

    status, headers, raw = http(
        f"{sim.url}/twirp/livekit.Egress/ListEgress",
        body=b"{}",
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {token(sim, room_list=True)}"},
    )
    assert status == 401
    assert json.loads(raw) == {"code": "unauthenticated", "msg": "permissions denied"}


def test_oss_ignores_page_token(sim):
    async def scenario(lkapi):
        eg = lkapi.egress
        for _ in range(3):
            await eg.start_room_composite_egress(
                egress.RoomCompositeEgressRequest(
                    room_name="r", file_outputs=[egress.EncodedFileOutput()]
                )
            )
        request = egress.ListEgressRequest()
        request.page_token.token = "anything-at-all"
        listed = await eg.list_egress(request)
        assert len(listed.items) == 3
        assert not listed.HasField("next_page_token")

    run(scenario, sim)


def test_cloud_keeps_plain_texts_and_paginates(sim_factory):
    cloud = sim_factory("--flavor", "cloud", "--page-size", "2")

    async def scenario(lkapi):
        eg = lkapi.egress
        error = await twirp_error(
            eg.stop_egress(egress.StopEgressRequest(egress_id="EG_doesnotexist"))
        )
        assert (error.code, error.message) == ("not_found", "egress does not exist")
        error = await twirp_error(
            eg.start_room_composite_egress(egress.RoomCompositeEgressRequest(room_name="r"))
        )
        assert (error.code, error.message) == ("invalid_argument", INVALID + "output")

        ids = []
        for _ in range(5):
            info = await eg.start_room_composite_egress(
                egress.RoomCompositeEgressRequest(
                    room_name="r", file_outputs=[egress.EncodedFileOutput()]
                )
            )
            ids.append(info.egress_id)
        seen, pages, request = [], 0, egress.ListEgressRequest()
        while True:
            page = await eg.list_egress(request)
            pages += 1
            assert len(page.items) <= 2
            seen.extend(i.egress_id for i in page.items)
            if not page.HasField("next_page_token"):
                break
            request = egress.ListEgressRequest()
            request.page_token.CopyFrom(page.next_page_token)
            assert pages < 10
        assert (pages, seen) == (3, ids)

    run(scenario, cloud)


FILE = egress.EncodedFileOutput(filepath="a.mp4")

VALIDATION_CASES = [
    ("no outputs", "start_room_composite_egress",
     egress.RoomCompositeEgressRequest(room_name="r"), INVALID + "output"),
    ("web url not http", "start_web_egress",
     egress.WebEgressRequest(url="example.com/page", file_outputs=[FILE]), INVALID + "web url"),
    ("no tracks", "start_track_composite_egress",
     egress.TrackCompositeEgressRequest(room_name="r", file_outputs=[FILE]),
     INVALID + "audio_track_id or video_track_id"),
    ("audio_only and video_only", "start_room_composite_egress",
     egress.RoomCompositeEgressRequest(
         room_name="r", audio_only=True, video_only=True, file_outputs=[FILE]),
     INVALID + "audio_only and video_only"),
    ("two files", "start_room_composite_egress",
     egress.RoomCompositeEgressRequest(room_name="r", file_outputs=[FILE, FILE]),
     INVALID + "multiple file outputs"),
    ("two files, unified", "start_egress",
     egress.StartEgressRequest(
         room_name="r", template=egress.TemplateSource(layout="grid"),
         outputs=[egress.Output(file=egress.FileOutput()), egress.Output(file=egress.FileOutput())]),
     INVALID + "multiple file outputs"),
    ("stream scheme", "start_room_composite_egress",
     egress.RoomCompositeEgressRequest(room_name="r", stream_outputs=[rtmp("srt://h:9000")]),
     "invalid url srt://h:9000: invalid scheme"),
    ("stream protocol", "start_room_composite_egress",
     egress.RoomCompositeEgressRequest(
         room_name="r", stream_outputs=[egress.StreamOutput(urls=["https://h/x/y"])]),
     "invalid url https://h/x/y: invalid protocol"),
    ("rtmp without key", "start_room_composite_egress",
     egress.RoomCompositeEgressRequest(room_name="r", stream_outputs=[rtmp("rtmp://h/live")]),
     "invalid url rtmp://h/live: rtmp urls must be of format "
     "rtmp(s)://{host}(/{path})/{app}/{stream_key}( live=1)"),
    ("template base url", "start_room_composite_egress",
     egress.RoomCompositeEgressRequest(
         room_name="r", custom_base_url="ftp://layouts", file_outputs=[FILE]),
     INVALID + "template base url"),
    ("websocket url", "start_track_egress",
     egress.TrackEgressRequest(room_name="r", track_id="TR_1", websocket_url="https://sink"),
     "invalid url https://sink: invalid scheme"),
    ("no room", "start_participant_egress",
     egress.ParticipantEgressRequest(identity="p", file_outputs=[FILE]),
     INVALID + "token or api key/secret"),
]


@pytest.mark.parametrize(
    "method,request_message,message",
    [case[1:] for case in VALIDATION_CASES],
    ids=[case[0] for case in VALIDATION_CASES],
)
def test_worker_validation_texts(sim, method, request_message, message):
    async def scenario(lkapi):
        error = await twirp_error(getattr(lkapi.egress, method)(request_message))
        assert (error.code, error.status) == ("invalid_argument", 400)
        # The worker validates, so the open-source server rewrites the text.
        assert error.message == RELAYED + message

    run(scenario, sim)
    assert sim.egresses() == []


def test_secrets_are_redacted_in_start_list_and_stop_answers(sim):
    key = "live_abcdef_0123456789"

    async def scenario(lkapi):
        eg = lkapi.egress
        started = await eg.start_room_composite_egress(
            egress.RoomCompositeEgressRequest(
                room_name="r",
                file_outputs=[egress.EncodedFileOutput(
                    filepath="a.mp4",
                    s3=egress.S3Upload(access_key="AKIA", secret="s3-secret",
                                       session_token="sts-token", bucket="b"),
                )],
                stream_outputs=[rtmp(f"rtmp://a.rtmp.youtube.com/live2/{key}")],
            )
        )
        unified = await eg.start_egress(
            egress.StartEgressRequest(
                room_name="r",
                template=egress.TemplateSource(layout="grid"),
                storage=egress.StorageConfig(azure=egress.AzureBlobUpload(
                    account_name="acct", account_key="azure-key", container_name="c")),
                outputs=[egress.Output(stream=egress.StreamOutput(
                    protocol=egress.StreamProtocol.SRT,
                    urls=["srt://h:9000?streamid=sid&passphrase=pass"]))],
            )
        )
        listed = await eg.list_egress(egress.ListEgressRequest())
        stopped = await eg.stop_egress(egress.StopEgressRequest(egress_id=started.egress_id))
        return started, unified, listed, stopped

    started, unified, listed, stopped = run(scenario, sim)
    redacted_url = "rtmp://a.rtmp.youtube.com/live2/{liv...789}"
    for info in (started, stopped, listed.items[0]):
        request = info.room_composite
        s3 = request.file_outputs[0].s3
        assert (s3.access_key, s3.secret, s3.session_token, s3.bucket) == (
            "{access_key}", "{secret}", "{session_token}", "b")
        assert list(request.stream_outputs[0].urls) == [redacted_url]
        assert info.stream_results[0].url == redacted_url
    for info in (unified, listed.items[1]):
        azure = info.egress.storage.azure
        assert (azure.account_name, azure.account_key, azure.container_name) == (
            "{account_name}", "{account_key}", "c")
        assert list(info.egress.outputs[0].stream.urls) == [
            "srt://h:9000?streamid={...}&passphrase={...}"]
        # LiveKit's worker reports SRT results with the URL as given (only RTMP keys are
        # redacted there), and so does the simulator.
        assert info.stream_results[0].url == "srt://h:9000?streamid=sid&passphrase=pass"
    for text in (str(started), str(listed.items[0]), str(stopped)):
        for secret in (key, "s3-secret", "sts-token"):
            assert secret not in text
    assert "azure-key" not in str(unified) + str(listed.items[1])
    # The simulator itself keeps the real values (its /sim view is for tests, not LiveKit's).
    kept = json.dumps(sim.egresses())
    assert "s3-secret" in kept and key in kept


def test_double_slash_paths_reach_twirp(sim):
    status, headers, raw = http(
        f"{sim.url}//twirp/livekit.Egress/ListEgress",
        body=b"{}",
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {token(sim, room_record=True)}"},
    )
    assert status == 200, raw
    assert json.loads(raw).get("items", []) == []
    assert sim.requests()[-1]["path"] == "/twirp/livekit.Egress/ListEgress"


def test_other_services_get_the_plain_404(sim):
    for path in ("/twirp/livekit.RoomService/ListRooms", "/twirp/livekit.Ingress/ListIngress",
                 "/rtc/nothing"):
        status, headers, raw = http(
            sim.url + path,
            body=b"{}",
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {token(sim, room_record=True)}"},
        )
        assert (status, raw) == (404, b"404 page not found\n"), path
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_cors_preflight_and_actual_request(sim):
    origin = "https://dashboard.example.com"
    status, headers, raw = http(
        f"{sim.url}/twirp/livekit.Egress/ListEgress",
        method="OPTIONS",
        headers={"Origin": origin,
                 "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"},
    )
    # Answered by the CORS middleware: no token needed, nothing recorded.
    assert (status, raw) == (204, b"")
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Allow-Methods"] == "POST"
    assert headers["Access-Control-Allow-Headers"] == "authorization,content-type"
    assert headers["Access-Control-Max-Age"] == "86400"
    assert headers["Vary"] == (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    assert sim.requests() == []

    status, headers, raw = http(
        f"{sim.url}/twirp/livekit.Egress/ListEgress",
        body=b"{}",
        headers={"Origin": origin, "Content-Type": "application/json",
                 "Authorization": f"Bearer {token(sim, room_record=True)}"},
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == origin
    assert headers["Access-Control-Expose-Headers"] == "*"
    assert headers["Vary"] == "Origin"
