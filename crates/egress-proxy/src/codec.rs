//! A gRPC codec whose messages are the raw protobuf bytes.
//!
//! The proxy forwards request bytes to LiveKit untouched, so a field that our pinned schema
//! does not know (a caller built from a newer LiveKit schema) survives the trip, and so
//! does an unknown field in LiveKit's answer. It is also the cheap path: no decode, no
//! re-encode.

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Initial size of a call's receive buffer. tonic allocates it eagerly for every call
/// (8 KiB by default), and the message bytes are split off it without a copy, so it lives
/// as long as the call: with thousands of calls in flight that default was the largest
/// allocation per call. Egress requests are a few hundred bytes; a larger message grows
/// the buffer to its size first.
const RECV_BUFFER: usize = 512;

/// Passes message bytes through without touching them.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        // A message smaller than the receive buffer is copied out: split off the buffer, it
        // would keep all of it for the whole call, though tonic's stream (and so the rest of
        // the buffer) is dropped once the one message is read. A larger one grew the buffer
        // to its own size first, so `DecodeBuf` splits it off without a copy.
        if len < RECV_BUFFER && src.chunk().len() >= len {
            let message = Bytes::copy_from_slice(&src.chunk()[..len]);
            src.advance(len);
            return Ok(Some(message));
        }
        Ok(Some(src.copy_to_bytes(len)))
    }

    fn buffer_settings(&self) -> BufferSettings {
        // The yield threshold (tonic's default) only matters when encoding a stream.
        BufferSettings::new(RECV_BUFFER, 32 * 1024)
    }
}
