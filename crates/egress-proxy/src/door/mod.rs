//! Front doors: each turns its protocol's request into a [`Call`](crate::call::Call), runs
//! it through the [`Stages`](crate::call::Stages), and turns the
//! [`Answer`](crate::call::Answer) or [`CallError`](crate::error::CallError) back into its
//! protocol. A door decides nothing about who may do what; it cannot skip a stage, because
//! the stages are the only way to an answer.
//!
//! - [`grpc`]: gRPC over HTTP/2 (the `livekit.Egress` service).
//! - [`events`]: the gateway's own `egress_gateway.v1.EgressEvents/Watch` stream, over the
//!   same authentication and policy.

pub mod events;
pub mod grpc;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use pin_project_lite::pin_project;

use crate::call::Slots;

pin_project! {
    /// An answer's body that holds the call's [`Slots`] until it is dropped: after its last
    /// frame went out, or when its stream was reset.
    pub struct HoldingSlots<B> {
        #[pin]
        body: B,
        _slots: Slots,
    }
}

impl<B> HoldingSlots<B> {
    /// `body`, releasing `slots` only when it is dropped.
    pub fn new(body: B, slots: Slots) -> Self {
        Self {
            body,
            _slots: slots,
        }
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for HoldingSlots<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
