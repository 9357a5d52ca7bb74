//! The one table of the egress service's RPCs, and everything generated from it.
//!
//! Every per-RPC fact lives in the crate-private `for_each_rpc!` table: the method name
//! (which is also the [`Rpc`] variant), the request and response messages, what the RPC
//! does ([`RpcKind`]: a Start names a room or page, Update and Stop an egress id, List
//! filters by either), the shape of its outputs, and its validator. The enum,
//! [`Rpc::ALL`], the names, the [`RpcRequest`] association and the per-RPC dispatch
//! elsewhere in the crate (views, response checks, validation, v1 output lists) are all
//! expansions of that one table, so adding an RPC is one row and the compiler points at
//! every `match` that must learn it.

use std::str::FromStr;

use crate::proto;

/// Hands the RPC table to `$then!`, one bracketed row per RPC, in the order the service
/// declares them:
///
/// `[docs, Variant, RequestMessage, ResponseMessage, kind, (outputs), validator]`
///
/// * `kind` is an [`RpcKind`] variant.
/// * `outputs`: `(v1 oneof_module)` for the v1 Start requests with four output lists and
///   a deprecated single `output` in `proto::oneof_module::Output`; `(v1)` for those
///   without one; `(unified)`, `(track)` or `(none)` otherwise.
/// * `validator` is the function in [`validate`](crate::validate) for the request.
///
/// A consumer matches `$([$(#[$doc:meta])* $rpc:ident, $req:ident, $resp:ident,
/// $kind:ident, $outputs:tt, $validate:ident])*` and ignores what it does not need.
macro_rules! for_each_rpc {
    ($then:ident) => {
        $then! {
            [/// The unified `StartEgress`.
             StartEgress, StartEgressRequest, EgressInfo, Start, (unified), validate_start_egress]
            [/// `UpdateLayout`.
             UpdateLayout, UpdateLayoutRequest, EgressInfo, Update, (none), validate_update_layout]
            [/// `UpdateStream`.
             UpdateStream, UpdateStreamRequest, EgressInfo, Update, (none), validate_update_stream]
            [/// `ListEgress`.
             ListEgress, ListEgressRequest, ListEgressResponse, List, (none), validate_list]
            [/// `StopEgress`.
             StopEgress, StopEgressRequest, EgressInfo, Stop, (none), validate_stop]
            [/// `StartRoomCompositeEgress`.
             StartRoomCompositeEgress, RoomCompositeEgressRequest, EgressInfo, Start,
             (v1 room_composite_egress_request), validate_room_composite]
            [/// `StartWebEgress`.
             StartWebEgress, WebEgressRequest, EgressInfo, Start,
             (v1 web_egress_request), validate_web]
            [/// `StartParticipantEgress`.
             StartParticipantEgress, ParticipantEgressRequest, EgressInfo, Start,
             (v1), validate_participant]
            [/// `StartTrackCompositeEgress`.
             StartTrackCompositeEgress, TrackCompositeEgressRequest, EgressInfo, Start,
             (v1 track_composite_egress_request), validate_track_composite]
            [/// `StartTrackEgress`.
             StartTrackEgress, TrackEgressRequest, EgressInfo, Start, (track), validate_track]
        }
    };
}
pub(crate) use for_each_rpc;

/// What an RPC does, and so what its request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcKind {
    /// Starts a new egress (and so may create recordings or streams); names a room, or a
    /// web page for the web egress.
    Start,
    /// Changes a running egress, named by its egress id.
    Update,
    /// Lists egresses, optionally filtered by room or egress id.
    List,
    /// Stops an egress, named by its egress id.
    Stop,
}

/// A request message of one egress RPC: which RPC it is for, and what that RPC answers.
///
/// Generic code (a client, the simulator) can send or serve a request without naming the
/// method or the response type again.
///
/// ```
/// use egress_core::rpc::RpcRequest;
/// use egress_core::{Rpc, proto};
///
/// fn method<R: RpcRequest>(_: &R) -> &'static str {
///     R::RPC.as_str()
/// }
/// assert_eq!(method(&proto::StopEgressRequest::default()), "StopEgress");
/// ```
pub trait RpcRequest: prost::Message + Default + 'static {
    /// The RPC this message is the request of.
    const RPC: Rpc;
    /// The RPC's response message.
    type Response: prost::Message + Default + 'static;
}

macro_rules! define_rpcs {
    ($([$(#[$doc:meta])* $rpc:ident, $req:ident, $resp:ident, $kind:ident, $outputs:tt,
        $validate:ident])*) => {
        /// The RPCs of the `livekit.Egress` service, generated from the crate's one RPC
        /// table.
        ///
        /// # Example
        ///
        /// ```
        /// use egress_core::Rpc;
        ///
        /// let rpc = Rpc::from_method("StartRoomCompositeEgress").unwrap();
        /// assert_eq!(rpc, Rpc::StartRoomCompositeEgress);
        /// assert_eq!(rpc.as_str(), "StartRoomCompositeEgress");
        /// assert!(rpc.is_start());
        /// assert!(!Rpc::StopEgress.is_start());
        /// assert_eq!(Rpc::from_path("/livekit.Egress/ListEgress"), Some(Rpc::ListEgress));
        /// assert_eq!(Rpc::from_method("startegress"), None);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rpc {
            $($(#[$doc])* $rpc,)*
        }

        impl Rpc {
            /// Every RPC, in the order the service declares them.
            pub const ALL: [Rpc; [$(Rpc::$rpc),*].len()] = [$(Rpc::$rpc),*];

            /// The method name as used in gRPC and Twirp paths.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Rpc::$rpc => stringify!($rpc),)*
                }
            }

            /// Fully qualified protobuf name of the request message, e.g.
            /// `livekit.StopEgressRequest`.
            pub const fn request_type(self) -> &'static str {
                match self {
                    $(Rpc::$rpc => concat!("livekit.", stringify!($req)),)*
                }
            }

            /// Fully qualified protobuf name of the response message, e.g.
            /// `livekit.EgressInfo`.
            pub const fn response_type(self) -> &'static str {
                match self {
                    $(Rpc::$rpc => concat!("livekit.", stringify!($resp)),)*
                }
            }

            /// What the RPC does.
            pub const fn kind(self) -> RpcKind {
                match self {
                    $(Rpc::$rpc => RpcKind::$kind,)*
                }
            }
        }

        $(
            impl RpcRequest for proto::$req {
                const RPC: Rpc = Rpc::$rpc;
                type Response = proto::$resp;
            }
        )*
    };
}

for_each_rpc!(define_rpcs);

impl Rpc {
    /// Fully qualified name of the service these RPCs belong to (the schema crate's
    /// constant, so the name is spelled once).
    pub const SERVICE: &'static str = egress_proto::EGRESS_SERVICE;

    /// The RPC with this exact (case-sensitive) method name.
    pub fn from_method(method: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| rpc.as_str() == method)
    }

    /// The RPC named by a gRPC path (`/livekit.Egress/StopEgress`) or a
    /// Twirp path (`/twirp/livekit.Egress/StopEgress`). Any other service
    /// yields `None`.
    ///
    /// ```
    /// use egress_core::Rpc;
    ///
    /// assert_eq!(Rpc::from_path("/twirp/livekit.Egress/StopEgress"), Some(Rpc::StopEgress));
    /// assert_eq!(Rpc::from_path("/livekit.Room/StopEgress"), None);
    /// ```
    pub fn from_path(path: &str) -> Option<Rpc> {
        let path = path.strip_prefix("/twirp").unwrap_or(path);
        let method = path
            .strip_prefix('/')?
            .strip_prefix(Self::SERVICE)?
            .strip_prefix('/')?;
        Self::from_method(method)
    }

    /// Whether the RPC starts a new egress (and so may create recordings or
    /// streams).
    pub const fn is_start(self) -> bool {
        matches!(self.kind(), RpcKind::Start)
    }
}

crate::display_as_str!(Rpc);

/// A method name that is not one of the egress RPCs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown egress rpc {0:?}")]
pub struct UnknownRpc(pub String);

impl FromStr for Rpc {
    type Err = UnknownRpc;

    /// Parses a method name, like [`Rpc::from_method`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_method(s).ok_or_else(|| UnknownRpc(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names_round_trip() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_method(rpc.as_str()), Some(rpc));
            assert_eq!(rpc.as_str().parse::<Rpc>(), Ok(rpc));
            assert_eq!(rpc.to_string(), rpc.as_str());
            let grpc = format!("/livekit.Egress/{rpc}");
            assert_eq!(Rpc::from_path(&grpc), Some(rpc));
            let twirp = format!("/twirp/livekit.Egress/{rpc}");
            assert_eq!(Rpc::from_path(&twirp), Some(rpc));
        }
        assert_eq!(
            Rpc::ALL.iter().filter(|r| r.is_start()).count(),
            6,
            "StartEgress plus the five v1 Start RPCs"
        );
        assert!("Nope".parse::<Rpc>().is_err());
        assert_eq!(Rpc::from_path("/livekit.Egress/"), None);
        assert_eq!(Rpc::from_path("livekit.Egress/StopEgress"), None);
    }

    /// The table's message names are the schema's: each RPC's request and response types
    /// are the input and output of the service method of the same name.
    #[test]
    fn table_matches_the_schema() {
        use prost_reflect::DescriptorPool;
        let pool = DescriptorPool::decode(egress_proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = pool.get_service_by_name(Rpc::SERVICE).unwrap();
        assert_eq!(service.methods().len(), Rpc::ALL.len());
        for rpc in Rpc::ALL {
            let method = service
                .methods()
                .find(|m| m.name() == rpc.as_str())
                .unwrap();
            assert_eq!(method.input().full_name(), rpc.request_type(), "{rpc}");
            assert_eq!(method.output().full_name(), rpc.response_type(), "{rpc}");
        }
        assert_eq!(
            <proto::ListEgressRequest as RpcRequest>::RPC,
            Rpc::ListEgress
        );
    }
}
