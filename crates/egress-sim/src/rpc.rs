//! The RPCs of `livekit.Egress` and their message types: `egress-core`'s one RPC table,
//! re-exported so the simulator serves exactly the RPCs the gateway knows.
//!
//! ```
//! use egress_sim::Rpc;
//! assert_eq!(Rpc::from_method("StopEgress"), Some(Rpc::StopEgress));
//! assert_eq!(Rpc::from_method("stopEgress"), None);
//! assert_eq!(Rpc::ListEgress.response_type(), "livekit.ListEgressResponse");
//! ```

pub use egress_core::Rpc;

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON codec looks messages up by these names in the simulator's own pool.
    #[test]
    fn names_round_trip_and_types_exist() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_method(rpc.as_str()), Some(rpc));
            let pool = egress_core::codec::pool();
            assert!(
                pool.get_message_by_name(rpc.request_type()).is_some(),
                "{rpc}"
            );
            assert!(
                pool.get_message_by_name(rpc.response_type()).is_some(),
                "{rpc}"
            );
        }
        assert_eq!(Rpc::from_method("Nope"), None);
    }
}
