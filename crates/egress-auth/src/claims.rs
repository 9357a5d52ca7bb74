//! The JSON shapes inside a LiveKit access token.
//!
//! Field order is alphabetical by JSON name on purpose: LiveKit's Go tooling produces claims with
//! sorted keys, so declaring fields in that order makes our payload byte-for-byte comparable to
//! theirs, which keeps diffs and fixtures readable.

use serde::{Deserialize, Serialize};

fn is_false(value: &bool) -> bool {
    !*value
}

/// The `video` grant of a LiveKit access token.
///
/// Serialized with camelCase names (`roomRecord`, `canPublish`, ...). Fields holding their default
/// value (`false` or an empty `room`) are left out, as current LiveKit tooling does, and absent
/// fields deserialize to their default.
///
/// Because `false` is omitted, `can_publish: false` cannot be expressed; a LiveKit server treats
/// an absent `canPublish`/`canSubscribe`/`canPublishData` as *allowed* for a joining
/// participant. The gateway only needs [`VideoGrants::room_record`], where this does not matter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VideoGrants {
    /// Publish tracks to the room.
    #[serde(skip_serializing_if = "is_false")]
    pub can_publish: bool,
    /// Publish data messages to the room.
    #[serde(skip_serializing_if = "is_false")]
    pub can_publish_data: bool,
    /// Subscribe to tracks in the room.
    #[serde(skip_serializing_if = "is_false")]
    pub can_subscribe: bool,
    /// Hide the participant from others.
    #[serde(skip_serializing_if = "is_false")]
    pub hidden: bool,
    /// Manage ingresses.
    #[serde(skip_serializing_if = "is_false")]
    pub ingress_admin: bool,
    /// Mark the participant as a recorder.
    #[serde(skip_serializing_if = "is_false")]
    pub recorder: bool,
    /// The room that `room_join`/`room_admin` apply to; empty means none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room: String,
    /// Administer `room`.
    #[serde(skip_serializing_if = "is_false")]
    pub room_admin: bool,
    /// Create rooms.
    #[serde(skip_serializing_if = "is_false")]
    pub room_create: bool,
    /// Join `room`.
    #[serde(skip_serializing_if = "is_false")]
    pub room_join: bool,
    /// List rooms.
    #[serde(skip_serializing_if = "is_false")]
    pub room_list: bool,
    /// Use the Egress service (start, update, list and stop egresses).
    #[serde(skip_serializing_if = "is_false")]
    pub room_record: bool,
}

impl VideoGrants {
    /// The grants the egress gateway needs: only `roomRecord`.
    ///
    /// ```
    /// let grants = egress_auth::VideoGrants::room_record();
    /// assert_eq!(serde_json::to_string(&grants).unwrap(), r#"{"roomRecord":true}"#);
    /// ```
    pub fn room_record() -> Self {
        Self {
            room_record: true,
            ..Self::default()
        }
    }
}

/// The claims of a LiveKit access token.
///
/// Times are seconds since the Unix epoch. Unknown claims (`name`, `metadata`, ...) are ignored
/// when deserializing, as a LiveKit server does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry; required.
    pub exp: u64,
    /// The API key that signed the token.
    pub iss: String,
    /// Not before; a missing `nbf` reads as 0 (valid since forever), which is how JWT treats it.
    #[serde(default)]
    pub nbf: u64,
    /// Participant identity; omitted when `None` (the gateway acts as no participant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// A webhook token's standard-base64 SHA-256 of the body it signs; omitted when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Video grants.
    #[serde(default)]
    pub video: VideoGrants,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grants_are_omitted() {
        assert_eq!(
            serde_json::to_string(&VideoGrants::default()).unwrap(),
            "{}"
        );
        assert_eq!(
            serde_json::to_string(&VideoGrants::room_record()).unwrap(),
            r#"{"roomRecord":true}"#
        );
    }

    #[test]
    fn all_grant_names_are_camel_case() {
        let all = VideoGrants {
            can_publish: true,
            can_publish_data: true,
            can_subscribe: true,
            hidden: true,
            ingress_admin: true,
            recorder: true,
            room: "r".into(),
            room_admin: true,
            room_create: true,
            room_join: true,
            room_list: true,
            room_record: true,
        };
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            concat!(
                r#"{"canPublish":true,"canPublishData":true,"canSubscribe":true,"hidden":true,"#,
                r#""ingressAdmin":true,"recorder":true,"room":"r","roomAdmin":true,"#,
                r#""roomCreate":true,"roomJoin":true,"roomList":true,"roomRecord":true}"#
            )
        );
        let back: VideoGrants =
            serde_json::from_str(&serde_json::to_string(&all).unwrap()).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn missing_fields_deserialize_to_defaults() {
        let g: VideoGrants = serde_json::from_str(r#"{"roomRecord":true,"unknown":1}"#).unwrap();
        assert_eq!(g, VideoGrants::room_record());

        let c: Claims = serde_json::from_str(r#"{"exp":10,"iss":"k","name":"x"}"#).unwrap();
        assert_eq!(
            c,
            Claims {
                exp: 10,
                iss: "k".into(),
                ..Claims::default()
            }
        );
        assert!(serde_json::from_str::<Claims>(r#"{"iss":"k"}"#).is_err());
    }

    #[test]
    fn sub_is_omitted_when_none() {
        let mut c = Claims {
            exp: 2,
            iss: "k".into(),
            nbf: 1,
            sub: None,
            sha256: None,
            video: VideoGrants::room_record(),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"exp":2,"iss":"k","nbf":1,"video":{"roomRecord":true}}"#
        );
        c.sub = Some("gateway".into());
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"exp":2,"iss":"k","nbf":1,"sub":"gateway","video":{"roomRecord":true}}"#
        );
    }
}
