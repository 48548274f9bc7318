//! How a server encodes its replies: `OK` written around an already encoded
//! value, and `ERR` in the shape the caller's protocol version expects.

use crate::error::ServiceError;
use crate::protocol::{self, msgpack, Header, MessageId};
use crate::service::Encoded;
use bytes::Bytes;

/// `OK [value]`, written around the value (see [`Encoded`]).
pub(super) fn encode_ok(response_to: &[u8], value: Encoded) -> Bytes {
    let id = MessageId::new();
    let header = Header {
        message_id: &id,
        response_to: Some(response_to),
    };
    if value.bytes().len() <= protocol::buffers::SCRATCH {
        // Small: header and value copied into one frame of exact size (one
        // allocation, where writing the header in front of the value took
        // three).
        return protocol::buffers::exact(|out| {
            protocol::encode_with(out, header, protocol::OK, |o| {
                o.push(0x91);
                o.extend_from_slice(value.bytes());
            })
        });
    }
    let mut head = Vec::with_capacity(80 + response_to.len());
    protocol::encode_with(&mut head, header, protocol::OK, |o| o.push(0x91));
    value.with_header(&head)
}

/// `ERR [name, message, traceback]`, or for a v1 caller (`legacy`) the
/// one-element `ERR [repr]` it expects.
pub(crate) fn encode_error(response_to: &[u8], legacy: bool, e: &ServiceError) -> Bytes {
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
                msgpack::write_str(o, &format!("{}({})", e.name, py_repr(&e.message)));
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

/// A string as Python's `repr` writes it (what a v1 `ERR` carries:
/// `ValueError('bad input')`): single quotes unless the text has a single
/// quote and no double one, backslash escapes for the quote, `\\` and
/// control characters.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::py_repr;

    #[test]
    fn reprs_like_python() {
        assert_eq!(py_repr("bad input"), "'bad input'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("it's \"x\""), "'it\\'s \"x\"'");
        assert_eq!(py_repr("a\nb\\c\u{1}"), "'a\\nb\\\\c\\x01'");
    }
}
