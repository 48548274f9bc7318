//! What a registered method becomes: one boxed function from raw msgpack
//! arguments to an encoded [`Reply`], whatever flavour it was registered
//! as; plus the guards that keep a panicking handler from taking anything
//! else down, and the reply encoding that leaves room for the `OK` header.

use super::Args;
use crate::error::ServiceError;
use crate::protocol::msgpack;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rmpv::Value;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// What a handler produced, already encoded as msgpack.
#[doc(hidden)]
pub enum Reply {
    /// A single value (sent as `OK [value]`).
    Value(Encoded),
    /// Items sent one by one as `STREAM item`, then `STREAM_DONE`; an error
    /// ends the stream with `ERR`.
    Stream(ItemStream),
}

/// Encoded stream items.
pub(crate) type ItemStream = BoxStream<'static, Result<Vec<u8>, ServiceError>>;

/// A registered method.
pub(crate) type Handler =
    Arc<dyn Fn(Args) -> BoxFuture<'static, Result<Reply, ServiceError>> + Send + Sync>;

/// Await a handler's future, turning a panic inside it into a `Panic`
/// error, so one bad handler never takes its task's peers down with it.
pub(crate) async fn guarded<T>(
    fut: impl Future<Output = Result<T, ServiceError>>,
) -> Result<T, ServiceError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => Err(panicked(&*panic)),
    }
}

/// The error a caller gets for a handler that panicked.
pub(crate) fn panicked(p: &(dyn std::any::Any + Send)) -> ServiceError {
    let message = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".into());
    ServiceError::new("Panic", message)
}

/// Encode a typed result; structs become msgpack maps (what Python and Node
/// peers expect), not rmp-serde's default arrays.
pub(crate) fn encode_result<R: Serialize>(r: R) -> Result<Reply, ServiceError> {
    // Room for small results without regrowing (a 64-byte bin encodes to
    // 66 bytes: a 64-byte start reallocated for each such reply).
    let mut buf = Encoded::buffer(Encoded::SMALL);
    write_typed(&mut buf, &r)?;
    Ok(Reply::Value(Encoded(buf)))
}

pub(crate) fn encode_typed<R: Serialize>(r: &R) -> Result<Vec<u8>, ServiceError> {
    let mut buf = Vec::with_capacity(128);
    write_typed(&mut buf, r)?;
    Ok(buf)
}

fn write_typed<R: Serialize>(buf: &mut Vec<u8>, r: &R) -> Result<(), ServiceError> {
    rmp_serde::encode::write_named(&mut crate::protocol::buffers::Writer(buf), r)
        .map_err(|e| ServiceError::type_error(format!("cannot serialize the result: {e}")))
}

/// A reply value encoded after [`Encoded::HEADROOM`] spare bytes, so the
/// server writes the `OK` event's header in front of it instead of copying
/// the value into a new frame (a 1 MiB result is never copied again).
#[doc(hidden)]
pub struct Encoded(Vec<u8>);

impl Encoded {
    /// Room for the `OK` header: 66 bytes plus the echoed request id (34
    /// for zrpc's and zerorpc-python's ids). Longer ids are copied instead.
    pub(crate) const HEADROOM: usize = 128;

    /// Value bytes a typed result's buffer starts with.
    const SMALL: usize = 256;

    fn buffer(value_len: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(Self::HEADROOM + value_len);
        buf.resize(Self::HEADROOM, 0);
        buf
    }

    /// Encode a dynamic value.
    pub(crate) fn value(v: &Value) -> Self {
        let mut buf = Self::buffer(msgpack::len_hint(v));
        msgpack::write_value(&mut buf, v);
        Encoded(buf)
    }

    /// The encoded value.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0[Self::HEADROOM..]
    }

    /// The whole frame: `header` written just before the value when it
    /// fits in the headroom (else copied), as one `Bytes`.
    pub(crate) fn with_header(mut self, header: &[u8]) -> Bytes {
        match Self::HEADROOM.checked_sub(header.len()) {
            Some(start) => {
                self.0[start..Self::HEADROOM].copy_from_slice(header);
                crate::protocol::buffers::into_bytes(self.0).slice(start..)
            }
            None => {
                let mut frame = Vec::with_capacity(header.len() + self.bytes().len());
                frame.extend_from_slice(header);
                frame.extend_from_slice(self.bytes());
                Bytes::from(frame)
            }
        }
    }
}
