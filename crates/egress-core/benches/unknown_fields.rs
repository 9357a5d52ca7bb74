//! Cost of the fail-closed walk: `cargo bench -p egress-core --bench unknown_fields`.
//!
//! The proxy walks every request of a caller whose policy restricts content once, on the
//! bytes in hand; this measures that walk for a typical and a large request, beside the
//! prost decode the policy does anyway.

use criterion::{Criterion, criterion_group, criterion_main};
use egress_core::Rpc;
use egress_core::proto;
use egress_core::unknown::first_unknown_field;
use prost::Message;

fn room_composite(outputs: usize) -> Vec<u8> {
    let mut request = proto::RoomCompositeEgressRequest {
        room_name: "standup".into(),
        layout: "grid".into(),
        ..Default::default()
    };
    for i in 0..outputs {
        request.stream_outputs.push(proto::StreamOutput {
            protocol: proto::StreamProtocol::Rtmp as i32,
            urls: vec![format!("rtmps://live{i}.example.com/app/key")],
            ..Default::default()
        });
        request.file_outputs.push(proto::EncodedFileOutput {
            filepath: format!("recordings/{i}/standup.mp4"),
            output: Some(proto::encoded_file_output::Output::S3(proto::S3Upload {
                bucket: "recordings".into(),
                region: "eu-west-1".into(),
                access_key: "AKIA".into(),
                secret: "secret".into(),
                ..Default::default()
            })),
            ..Default::default()
        });
    }
    request.encode_to_vec()
}

fn bench(c: &mut Criterion) {
    for (name, outputs) in [("typical (1 stream, 1 file)", 1), ("large (16 + 16)", 16)] {
        let body = room_composite(outputs);
        c.bench_function(
            &format!("unknown-field walk, {name}, {} B", body.len()),
            |b| {
                b.iter(|| {
                    first_unknown_field(Rpc::StartRoomCompositeEgress, std::hint::black_box(&body))
                })
            },
        );
        c.bench_function(&format!("prost decode, {name}, {} B", body.len()), |b| {
            b.iter(|| proto::RoomCompositeEgressRequest::decode(std::hint::black_box(&body[..])))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
