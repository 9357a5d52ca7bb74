//! Twirp's two encodings: binary protobuf and protobuf-JSON, as LiveKit's Twirp server
//! speaks them. Shared by the gateway's Twirp door and the simulator.
//!
//! JSON goes through `prost-reflect`: the body is parsed into a `DynamicMessage` of the
//! message type (accepting both `snake_case` proto names and `lowerCamelCase` JSON names,
//! ignoring unknown fields, as Twirp's Go server does with `DiscardUnknown`). Answers are
//! written with proto (`snake_case`) names and with default values included, like Twirp
//! v8's default `protojson` options.

use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};

pub use crate::unknown::pool;

/// A Twirp body encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFormat {
    Protobuf,
    Json,
}

impl WireFormat {
    /// Parses a `Content-Type` the way Twirp does: parameters after `;` are ignored, the media
    /// type is compared case-insensitively after trimming.
    pub fn from_content_type(value: &str) -> Option<WireFormat> {
        let media = value.split(';').next().unwrap_or("").trim();
        [WireFormat::Protobuf, WireFormat::Json]
            .into_iter()
            .find(|format| media.eq_ignore_ascii_case(format.content_type()))
    }

    /// The `Content-Type` of an answer in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            WireFormat::Protobuf => "application/protobuf",
            WireFormat::Json => "application/json",
        }
    }

    /// The encoding's short name (`protobuf`, `json`), as Twirp's messages use it.
    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::Protobuf => "protobuf",
            WireFormat::Json => "json",
        }
    }
}

fn descriptor(type_name: &str) -> Result<MessageDescriptor, String> {
    pool()
        .get_message_by_name(type_name)
        .ok_or_else(|| format!("unknown message type {type_name}"))
}

/// Parses a protobuf-JSON body of message type `type_name`.
fn from_json(type_name: &str, body: &[u8]) -> Result<DynamicMessage, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic =
        DynamicMessage::deserialize_with_options(descriptor(type_name)?, &mut de, &options)
            .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(dynamic)
}

/// Converts a protobuf-JSON body of message type `type_name` to protobuf, once: what a
/// JSON caller meant, as the bytes a protobuf caller would have sent.
///
/// # Errors
///
/// A short description for logs when the body is not JSON for that message.
pub fn json_to_protobuf(type_name: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    Ok(from_json(type_name, body)?.encode_to_vec())
}

/// Decodes a request body of message type `type_name` into `T`.
///
/// # Errors
///
/// A short description for logs; Twirp itself answers `malformed` with a fixed message.
pub fn decode<T: Message + Default>(
    encoding: WireFormat,
    type_name: &str,
    body: &[u8],
) -> Result<T, String> {
    match encoding {
        WireFormat::Protobuf => T::decode(body).map_err(|e| e.to_string()),
        WireFormat::Json => from_json(type_name, body)?
            .transcode_to::<T>()
            .map_err(|e| e.to_string()),
    }
}

/// Encodes an answer of message type `type_name`.
///
/// # Panics
///
/// When `T` is not the message `type_name` names in the pinned schema.
pub fn encode<T: Message>(encoding: WireFormat, type_name: &str, message: &T) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    match encoding {
        WireFormat::Protobuf => bytes,
        WireFormat::Json => to_json(type_name, &bytes).expect("generated types match the pool"),
    }
}

/// A message that serializes as Go's `protojson.Marshal` writes it (what LiveKit's webhooks
/// carry): `lowerCamelCase` names, default values left out, 64-bit integers as strings,
/// enums by name.
#[derive(Debug)]
pub struct ProtoJson(DynamicMessage);

impl ProtoJson {
    /// `message`, of the pinned schema's type `type_name`, ready to serialize.
    ///
    /// # Errors
    ///
    /// When `type_name` is not in the pinned schema, or `message` is not of that type.
    pub fn new<T: Message>(type_name: &str, message: &T) -> Result<Self, String> {
        DynamicMessage::decode(descriptor(type_name)?, message.encode_to_vec().as_slice())
            .map(Self)
            .map_err(|e| e.to_string())
    }
}

impl serde::Serialize for ProtoJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_with_options(serializer, &SerializeOptions::new())
    }
}

/// Converts an encoded protobuf message to Twirp-style JSON (`snake_case` names, defaults
/// included, 64-bit integers as strings, enums by name).
///
/// # Errors
///
/// When `bytes` is not protobuf for `type_name`.
pub fn to_json(type_name: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let dynamic =
        DynamicMessage::decode(descriptor(type_name)?, bytes).map_err(|e| e.to_string())?;
    let mut ser = serde_json::Serializer::new(Vec::new());
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    dynamic
        .serialize_with_options(&mut ser, &options)
        .map_err(|e| e.to_string())?;
    Ok(ser.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use egress_proto::livekit;

    #[test]
    fn content_types() {
        assert_eq!(
            WireFormat::from_content_type("application/protobuf"),
            Some(WireFormat::Protobuf)
        );
        assert_eq!(
            WireFormat::from_content_type(" Application/JSON ; charset=utf-8"),
            Some(WireFormat::Json)
        );
        assert_eq!(WireFormat::from_content_type("application/grpc"), None);
        assert_eq!(WireFormat::from_content_type(""), None);
        assert_eq!(
            WireFormat::from_content_type("application/x-protobuf"),
            None
        );
    }

    #[test]
    fn json_accepts_both_name_styles_and_ignores_unknown_fields() {
        let body = br#"{"roomName":"a","egress_id":"EG_1","active":true,"bogus":{"x":1}}"#;
        let request: livekit::ListEgressRequest =
            decode(WireFormat::Json, "livekit.ListEgressRequest", body).unwrap();
        assert_eq!(request.room_name, "a");
        assert_eq!(request.egress_id, "EG_1");
        assert!(request.active);

        assert!(
            decode::<livekit::ListEgressRequest>(
                WireFormat::Json,
                "livekit.ListEgressRequest",
                b"{"
            )
            .is_err()
        );
        assert!(
            decode::<livekit::ListEgressRequest>(
                WireFormat::Json,
                "livekit.ListEgressRequest",
                b""
            )
            .is_err()
        );
    }

    #[test]
    fn json_converts_to_the_protobuf_a_protobuf_caller_sends() {
        let camel = br#"{"egressId":"EG_1","unknownField":7}"#;
        let snake = br#"{"egress_id":"EG_1"}"#;
        let expected = livekit::StopEgressRequest {
            egress_id: "EG_1".into(),
        }
        .encode_to_vec();
        for body in [&camel[..], &snake[..]] {
            assert_eq!(
                json_to_protobuf("livekit.StopEgressRequest", body).unwrap(),
                expected
            );
        }
        assert!(json_to_protobuf("livekit.StopEgressRequest", b"[1]").is_err());
        assert!(json_to_protobuf("livekit.Nope", b"{}").is_err());
    }

    #[test]
    fn json_answers_use_snake_case_and_include_defaults() {
        let info = livekit::EgressInfo {
            egress_id: "EG_1".into(),
            room_name: "r".into(),
            started_at: 5,
            ..Default::default()
        };
        let json = encode(WireFormat::Json, "livekit.EgressInfo", &info);
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["egress_id"], "EG_1");
        assert_eq!(value["room_name"], "r");
        assert_eq!(value["started_at"], "5");
        assert_eq!(value["status"], "EGRESS_STARTING");
        assert!(value.get("egressId").is_none());
        // Unset message fields and oneofs are left out.
        assert!(value.get("room_composite").is_none());
    }
}
