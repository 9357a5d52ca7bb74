//! Fields our schema does not know, found on the wire.
//!
//! prost drops unknown fields when it decodes, so a [`RequestView`](crate::RequestView)
//! cannot show what a caller built from a newer LiveKit schema put in a request: a new
//! output destination, say, that LiveKit would act on but our policy never saw. The
//! gateway forwards the caller's bytes untouched, so for a caller whose policy restricts
//! what a request may carry, an unknown field must mean "refuse" (fail closed).
//!
//! [`first_unknown_field`] walks the encoded request once against the descriptors of the
//! pinned schema (the same ones served by reflection) and reports the first field number
//! that a message does not declare. It only looks at tags and lengths: nothing is
//! allocated or decoded beyond that.
//!
//! Every message reachable from the request is walked except [`OPAQUE_MESSAGES`]: encoding
//! knobs that no policy rule reads, where refusing a newer codec option would only break
//! callers without protecting anything.

use std::sync::LazyLock;

use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

use crate::Rpc;

/// Messages whose contents no policy rule reads; their unknown fields are not reported.
pub const OPAQUE_MESSAGES: &[&str] = &["livekit.EncodingOptions"];

/// Deepest message nesting the walk follows (the egress schema nests about five deep).
const MAX_DEPTH: u32 = 32;

/// A field number a message of the pinned schema does not declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// Fully qualified name of the message that carried it (`livekit.StreamOutput`).
    pub message: String,
    /// The field number.
    pub number: u32,
}

impl std::fmt::Display for UnknownField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field {} of {}", self.number, self.message)
    }
}

/// The request is not well-formed protobuf (or nests deeper than any egress message).
#[derive(Debug, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct WireError(String);

/// The pinned schema's request message of every RPC, looked up once.
struct Schema {
    inputs: Vec<(Rpc, MessageDescriptor)>,
}

/// The pinned schema's descriptors, decoded once for the whole process.
pub fn pool() -> &'static DescriptorPool {
    static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
        DescriptorPool::decode(egress_proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor set is valid")
    });
    &POOL
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let service = pool()
        .get_service_by_name(Rpc::SERVICE)
        .expect("the descriptor set declares the egress service");
    let inputs = Rpc::ALL
        .iter()
        .map(|&rpc| {
            let method = service
                .methods()
                .find(|m| m.name() == rpc.as_str())
                .expect("every Rpc is a method of the egress service");
            (rpc, method.input())
        })
        .collect();
    Schema { inputs }
});

/// The descriptor of `rpc`'s request message.
pub fn request_descriptor(rpc: Rpc) -> &'static MessageDescriptor {
    SCHEMA
        .inputs
        .iter()
        .find(|(r, _)| *r == rpc)
        .map(|(_, d)| d)
        .expect("every Rpc has a request descriptor")
}

/// The first field in `body` (an encoded request of `rpc`) that the pinned schema does
/// not declare, in wire order, depth first; `None` when every field is known.
///
/// ```
/// use egress_core::Rpc;
/// use egress_core::unknown::first_unknown_field;
///
/// // StopEgressRequest { egress_id = "EG_1" } followed by field 99 (varint 1).
/// let mut body = vec![0x0a, 4, b'E', b'G', b'_', b'1'];
/// body.extend([0x98, 0x06, 1]);
/// let unknown = first_unknown_field(Rpc::StopEgress, &body)?.unwrap();
/// assert_eq!((unknown.message.as_str(), unknown.number), ("livekit.StopEgressRequest", 99));
/// assert_eq!(first_unknown_field(Rpc::StopEgress, &body[..6])?, None);
/// # Ok::<(), egress_core::unknown::WireError>(())
/// ```
///
/// # Errors
///
/// [`WireError`] when `body` is not well-formed protobuf.
pub fn first_unknown_field(rpc: Rpc, body: &[u8]) -> Result<Option<UnknownField>, WireError> {
    walk(request_descriptor(rpc), body, 0)
}

fn walk(
    message: &MessageDescriptor,
    mut buf: &[u8],
    depth: u32,
) -> Result<Option<UnknownField>, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError(format!(
            "nested deeper than {MAX_DEPTH} messages"
        )));
    }
    let malformed = |err: prost::DecodeError| WireError(err.to_string());
    while !buf.is_empty() {
        let (number, wire_type) = decode_key(&mut buf).map_err(malformed)?;
        let Some(field) = message.get_field(number) else {
            return Ok(Some(UnknownField {
                message: message.full_name().to_owned(),
                number,
            }));
        };
        match (field.kind(), wire_type) {
            (Kind::Message(inner), WireType::LengthDelimited) => {
                let len = decode_varint(&mut buf).map_err(malformed)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= buf.len())
                    .ok_or_else(|| WireError("length past the end of the message".into()))?;
                let (nested, rest) = buf.split_at(len);
                buf = rest;
                if !OPAQUE_MESSAGES.contains(&inner.full_name())
                    && let Some(unknown) = walk(&inner, nested, depth + 1)?
                {
                    return Ok(Some(unknown));
                }
            }
            _ => skip_field(wire_type, number, &mut buf, DecodeContext::default())
                .map_err(malformed)?,
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto;

    /// Appends field `number` as a varint to an encoded message.
    fn with_unknown(mut bytes: Vec<u8>, number: u32) -> Vec<u8> {
        prost::encoding::encode_key(number, WireType::Varint, &mut bytes);
        prost::encoding::encode_varint(1, &mut bytes);
        bytes
    }

    fn room_composite(stream: Vec<u8>) -> Vec<u8> {
        let mut body = proto::RoomCompositeEgressRequest {
            room_name: "standup".into(),
            ..Default::default()
        }
        .encode_to_vec();
        // stream_outputs is field 12.
        prost::encoding::encode_key(12, WireType::LengthDelimited, &mut body);
        prost::encoding::encode_varint(stream.len() as u64, &mut body);
        body.extend(stream);
        body
    }

    fn stream_output() -> Vec<u8> {
        proto::StreamOutput {
            protocol: proto::StreamProtocol::Rtmp as i32,
            urls: vec!["rtmp://a.example/live".into()],
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn known_request_has_no_unknown_field() {
        let body = room_composite(stream_output());
        assert_eq!(
            first_unknown_field(Rpc::StartRoomCompositeEgress, &body).unwrap(),
            None
        );
    }

    #[test]
    fn unknown_field_in_a_nested_message_is_named() {
        let body = room_composite(with_unknown(stream_output(), 4000));
        let unknown = first_unknown_field(Rpc::StartRoomCompositeEgress, &body)
            .unwrap()
            .unwrap();
        assert_eq!(unknown.message, "livekit.StreamOutput");
        assert_eq!(unknown.number, 4000);
        assert_eq!(unknown.to_string(), "field 4000 of livekit.StreamOutput");
    }

    #[test]
    fn unknown_field_at_the_top_is_named() {
        let body = with_unknown(room_composite(stream_output()), 4000);
        let unknown = first_unknown_field(Rpc::StartRoomCompositeEgress, &body)
            .unwrap()
            .unwrap();
        assert_eq!(unknown.message, "livekit.RoomCompositeEgressRequest");
        assert_eq!(unknown.number, 4000);
    }

    #[test]
    fn opaque_messages_are_not_walked() {
        let options = with_unknown(
            proto::EncodingOptions {
                width: 1280,
                ..Default::default()
            }
            .encode_to_vec(),
            4000,
        );
        let mut body = proto::RoomCompositeEgressRequest {
            room_name: "standup".into(),
            ..Default::default()
        }
        .encode_to_vec();
        // advanced (EncodingOptions) is field 9.
        prost::encoding::encode_key(9, WireType::LengthDelimited, &mut body);
        prost::encoding::encode_varint(options.len() as u64, &mut body);
        body.extend(options);
        assert_eq!(
            first_unknown_field(Rpc::StartRoomCompositeEgress, &body).unwrap(),
            None
        );
    }

    #[test]
    fn every_rpc_has_a_request_descriptor() {
        for rpc in Rpc::ALL {
            assert!(request_descriptor(rpc).full_name().starts_with("livekit."));
            assert_eq!(first_unknown_field(rpc, &[]).unwrap(), None);
        }
    }

    #[test]
    fn malformed_bytes_are_an_error() {
        // A length-delimited stream_outputs longer than the body.
        assert!(first_unknown_field(Rpc::StartRoomCompositeEgress, &[0x62, 50, 1]).is_err());
        // A truncated varint.
        assert!(first_unknown_field(Rpc::StopEgress, &[0x98]).is_err());
    }
}
