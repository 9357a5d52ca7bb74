//! Twirp's two encodings: binary protobuf and protobuf-JSON.
//!
//! JSON goes through `prost-reflect`: the body is parsed into a `DynamicMessage` of the
//! request type (accepting both `snake_case` proto names and `lowerCamelCase` JSON names,
//! ignoring unknown fields, as Twirp's Go server does with `DiscardUnknown`), then transcoded
//! to the generated prost type. Answers are written with proto (`snake_case`) names and with
//! default values included, like Twirp v8's default `protojson` options.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

/// The pool built from [`egress_proto::FILE_DESCRIPTOR_SET`], shared by the whole process.
pub(crate) fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(egress_proto::FILE_DESCRIPTOR_SET)
            .expect("egress-proto's descriptor set is valid")
    })
}

/// A Twirp body encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireFormat {
    Protobuf,
    Json,
}

impl WireFormat {
    /// Parses a `Content-Type` the way Twirp does: parameters after `;` are ignored, the media
    /// type is compared case-insensitively after trimming.
    pub(crate) fn from_content_type(value: &str) -> Option<WireFormat> {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/protobuf") {
            Some(WireFormat::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(WireFormat::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` of an answer in this encoding.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            WireFormat::Protobuf => "application/protobuf",
            WireFormat::Json => "application/json",
        }
    }
}

/// Decodes a request body of message type `type_name` into `T`.
///
/// The error is a short description for logs; Twirp itself answers `malformed` with a fixed
/// message.
pub(crate) fn decode<T: Message + Default>(
    encoding: WireFormat,
    type_name: &str,
    body: &[u8],
) -> Result<T, String> {
    match encoding {
        WireFormat::Protobuf => T::decode(body).map_err(|e| e.to_string()),
        WireFormat::Json => {
            let desc = pool()
                .get_message_by_name(type_name)
                .ok_or_else(|| format!("unknown message type {type_name}"))?;
            let mut de = serde_json::Deserializer::from_slice(body);
            let options = DeserializeOptions::new().deny_unknown_fields(false);
            let dynamic = DynamicMessage::deserialize_with_options(desc, &mut de, &options)
                .map_err(|e| e.to_string())?;
            de.end().map_err(|e| e.to_string())?;
            dynamic.transcode_to::<T>().map_err(|e| e.to_string())
        }
    }
}

/// Encodes an answer of message type `type_name`.
pub(crate) fn encode<T: Message>(encoding: WireFormat, type_name: &str, message: &T) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    match encoding {
        WireFormat::Protobuf => bytes,
        WireFormat::Json => to_json(type_name, &bytes).expect("generated types match the pool"),
    }
}

fn dynamic(type_name: &str, bytes: &[u8]) -> Result<DynamicMessage, String> {
    let desc = pool()
        .get_message_by_name(type_name)
        .ok_or_else(|| format!("unknown message type {type_name}"))?;
    DynamicMessage::decode(desc, bytes).map_err(|e| e.to_string())
}

/// A message that serializes as Go's `protojson.Marshal` writes it (what LiveKit's webhooks
/// carry): `lowerCamelCase` names, default values left out, 64-bit integers as strings,
/// enums by name.
#[derive(Debug)]
pub(crate) struct ProtoJson(DynamicMessage);

impl ProtoJson {
    pub(crate) fn new<T: Message>(type_name: &str, message: &T) -> Result<Self, String> {
        dynamic(type_name, &message.encode_to_vec()).map(Self)
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
pub(crate) fn to_json(type_name: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let dynamic = dynamic(type_name, bytes)?;
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
