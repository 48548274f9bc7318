//! How a server encodes its replies: `OK` written around an already encoded
//! value, and `ERR` in the shape the caller's protocol version expects.

use crate::error::ServiceError;
use crate::protocol::{self, msgpack, Header, MessageId};
use crate::service::Encoded;
use bytes::Bytes;

/// `OK [value]`, written around the value (see [`Encoded`]).
pub(super) fn encode_ok(response_to: &[u8], value: Encoded) -> Bytes {
    let id = MessageId::new();
    let mut header = Vec::with_capacity(80 + response_to.len());
    protocol::encode_with(
        &mut header,
        Header {
            message_id: &id,
            response_to: Some(response_to),
        },
        protocol::OK,
        |o| o.push(0x91),
    );
    value.with_header(&header)
}

/// `ERR [name, message, traceback]`, or for a v1 caller (`legacy`) the
/// one-element `ERR [repr]` it expects.
pub(super) fn encode_error(response_to: &[u8], legacy: bool, e: &ServiceError) -> Bytes {
    if legacy {
        let id = MessageId::new();
        let mut out = Vec::new();
        protocol::encode_with(
            &mut out,
            Header {
                message_id: &id,
                response_to: Some(response_to),
            },
            protocol::ERR,
            |o| {
                o.push(0x91);
                msgpack::write_str(o, &format!("{}({:?})", e.name, e.message));
            },
        );
        return out.into();
    }
    // Python's RemoteError prints the traceback when there is one, so always
    // send at least the exception line.
    let tb = if e.traceback.is_empty() {
        format!("{}: {}\n", e.name, e.message)
    } else {
        e.traceback.clone()
    };
    protocol::encode_err(response_to, &e.name, &e.message, &tb).into()
}
