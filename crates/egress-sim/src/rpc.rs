//! The RPCs of `livekit.Egress` and their message types.

use std::fmt;

/// One RPC of LiveKit's `livekit.Egress` service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// `StartRoomCompositeEgress` (legacy).
    StartRoomCompositeEgress,
    /// `StartWebEgress` (legacy).
    StartWebEgress,
    /// `StartParticipantEgress` (legacy).
    StartParticipantEgress,
    /// `StartTrackCompositeEgress` (legacy).
    StartTrackCompositeEgress,
    /// `StartTrackEgress` (legacy).
    StartTrackEgress,
    /// `StartEgress`, the unified start RPC.
    StartEgress,
    /// `UpdateLayout`.
    UpdateLayout,
    /// `UpdateStream`.
    UpdateStream,
    /// `ListEgress`.
    ListEgress,
    /// `StopEgress`.
    StopEgress,
}

impl Rpc {
    /// Every RPC, in the order the simulator documents them.
    pub const ALL: [Rpc; 10] = [
        Rpc::StartRoomCompositeEgress,
        Rpc::StartWebEgress,
        Rpc::StartParticipantEgress,
        Rpc::StartTrackCompositeEgress,
        Rpc::StartTrackEgress,
        Rpc::StartEgress,
        Rpc::UpdateLayout,
        Rpc::UpdateStream,
        Rpc::ListEgress,
        Rpc::StopEgress,
    ];

    /// The method name as it appears in the Twirp path, e.g. `StopEgress`.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::StartRoomCompositeEgress => "StartRoomCompositeEgress",
            Rpc::StartWebEgress => "StartWebEgress",
            Rpc::StartParticipantEgress => "StartParticipantEgress",
            Rpc::StartTrackCompositeEgress => "StartTrackCompositeEgress",
            Rpc::StartTrackEgress => "StartTrackEgress",
            Rpc::StartEgress => "StartEgress",
            Rpc::UpdateLayout => "UpdateLayout",
            Rpc::UpdateStream => "UpdateStream",
            Rpc::ListEgress => "ListEgress",
            Rpc::StopEgress => "StopEgress",
        }
    }

    /// Looks an RPC up by its exact (case-sensitive) method name.
    ///
    /// ```
    /// use egress_sim::Rpc;
    /// assert_eq!(Rpc::from_name("StopEgress"), Some(Rpc::StopEgress));
    /// assert_eq!(Rpc::from_name("stopEgress"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| rpc.name() == name)
    }

    /// Fully-qualified protobuf name of the request message.
    pub fn input_type(self) -> &'static str {
        match self {
            Rpc::StartRoomCompositeEgress => "livekit.RoomCompositeEgressRequest",
            Rpc::StartWebEgress => "livekit.WebEgressRequest",
            Rpc::StartParticipantEgress => "livekit.ParticipantEgressRequest",
            Rpc::StartTrackCompositeEgress => "livekit.TrackCompositeEgressRequest",
            Rpc::StartTrackEgress => "livekit.TrackEgressRequest",
            Rpc::StartEgress => "livekit.StartEgressRequest",
            Rpc::UpdateLayout => "livekit.UpdateLayoutRequest",
            Rpc::UpdateStream => "livekit.UpdateStreamRequest",
            Rpc::ListEgress => "livekit.ListEgressRequest",
            Rpc::StopEgress => "livekit.StopEgressRequest",
        }
    }

    /// Fully-qualified protobuf name of the response message.
    pub fn output_type(self) -> &'static str {
        match self {
            Rpc::ListEgress => "livekit.ListEgressResponse",
            _ => "livekit.EgressInfo",
        }
    }

    /// Whether the RPC starts a new egress.
    pub fn is_start(self) -> bool {
        matches!(
            self,
            Rpc::StartRoomCompositeEgress
                | Rpc::StartWebEgress
                | Rpc::StartParticipantEgress
                | Rpc::StartTrackCompositeEgress
                | Rpc::StartTrackEgress
                | Rpc::StartEgress
        )
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_types_exist() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_name(rpc.name()), Some(rpc));
            let pool = crate::codec::pool();
            assert!(
                pool.get_message_by_name(rpc.input_type()).is_some(),
                "{rpc}"
            );
            assert!(
                pool.get_message_by_name(rpc.output_type()).is_some(),
                "{rpc}"
            );
        }
        assert_eq!(Rpc::from_name("Nope"), None);
    }
}
