//! A gRPC codec whose messages are the raw protobuf bytes.
//!
//! The proxy forwards request bytes to LiveKit untouched, so a field that our pinned schema
//! does not know (a caller built from a newer LiveKit schema) survives the trip, and so
//! does an unknown field in LiveKit's answer. It is also the cheap path: no decode, no
//! re-encode.

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

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
        // `DecodeBuf` splits its frame off the receive buffer here: no copy.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
