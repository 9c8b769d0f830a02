//! How a replay call's values cross processes: every replay function's
//! arguments are one [`ReplayCall`] (an `lp_replay::Request` and the
//! call's deadline) and its result one [`ReplayReply`] (the operation is in
//! the value, not the key), and both travel as postcard, with byte buffers
//! written whole. Decoding arbitrary bytes returns an error, never panics.
//!
//! The deadline travels with the call because the replay decides it: a
//! call its rate limiter holds is withdrawn by the replay at the deadline
//! and answered [`ReplayReply::TimedOut`], so a caller told `timeout` knows
//! the call changed nothing. (Were the caller's own timer the judge, a
//! call could be carried out in another process while the caller, already
//! gone, retried it.)

use std::any::Any;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::courier::TypedWire;
use crate::courier::codec::CodecError;

/// One call to a replay node.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayCall {
    pub request: lp_replay::Request,
    /// How long the replay may hold the call (from when it arrives); none:
    /// without limit.
    pub within: Option<Duration>,
}

/// A replay node's answer.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum ReplayReply {
    Done(lp_replay::Response),
    /// Withdrawn at its deadline, having changed nothing.
    TimedOut,
}

/// How long a caller waits past its deadline for the replay's answer
/// (which says whether the call was carried out) before it gives up on a
/// replay that does not answer at all (a stalled process).
pub fn grace(deadline: Duration) -> Duration {
    Duration::from_secs(1) + deadline / 2
}

/// The typed encoding of every lp:replay function.
pub struct ReplayWire;

fn put<T: serde::Serialize + 'static>(
    value: &(dyn Any + Send),
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let value = value
        .downcast_ref::<T>()
        .ok_or_else(|| CodecError("a replay call of an unexpected type".into()))?;
    let written = std::mem::take(out);
    *out = postcard::to_extend(value, written)
        .map_err(|e| CodecError(format!("cannot encode a replay call: {e}")))?;
    Ok(())
}

fn get<T: serde::de::DeserializeOwned + Send + 'static>(
    input: &mut &[u8],
) -> Result<Box<dyn Any + Send>, CodecError> {
    let (value, rest) = postcard::take_from_bytes::<T>(input)
        .map_err(|e| CodecError(format!("a replay call that does not decode: {e}")))?;
    *input = rest;
    Ok(Box::new(value))
}

impl TypedWire for ReplayWire {
    fn encode_args(&self, args: &(dyn Any + Send), out: &mut Vec<u8>) -> Result<(), CodecError> {
        put::<ReplayCall>(args, out)
    }
    fn decode_args(&self, input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError> {
        get::<ReplayCall>(input)
    }
    fn encode_result(
        &self,
        result: &(dyn Any + Send),
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        put::<ReplayReply>(result, out)
    }
    fn decode_result(&self, input: &mut &[u8]) -> Result<Box<dyn Any + Send>, CodecError> {
        get::<ReplayReply>(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lp_replay::{ItemData, NewItem, Request, Response, TablePriority};

    #[test]
    fn a_request_round_trips_and_garbage_is_refused() {
        let request = ReplayCall {
            request: Request::Insert(vec![NewItem {
                data: ItemData::Raw(vec![7; 1024]).into(),
                priorities: vec![TablePriority {
                    table: "t".into(),
                    priority: 2.5,
                }],
            }]),
            within: Some(Duration::from_millis(250)),
        };
        let mut bytes = Vec::new();
        ReplayWire.encode_args(&request, &mut bytes).unwrap();
        // The item's bytes are written whole, not one varint each.
        assert!(bytes.len() < 1024 + 32, "{} bytes", bytes.len());
        let mut input = bytes.as_slice();
        let back = ReplayWire.decode_args(&mut input).unwrap();
        assert!(input.is_empty());
        assert_eq!(*back.downcast::<ReplayCall>().unwrap(), request);

        for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                ReplayWire.decode_args(&mut &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = ReplayWire.decode_result(&mut garbage.as_slice());
        let mut wrong = Vec::new();
        assert!(ReplayWire.encode_result(&request, &mut wrong).is_err());
        let info = ReplayReply::Done(Response::Info(Vec::new()));
        ReplayWire.encode_result(&info, &mut wrong).unwrap();
        let mut input = wrong.as_slice();
        let back = ReplayWire.decode_result(&mut input).unwrap();
        assert_eq!(*back.downcast::<ReplayReply>().unwrap(), info);
    }
}
