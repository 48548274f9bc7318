//! The errors of sockets and their tasks ([`ZmqError`], [`TaskError`]).

use crate::async_rt;
use crate::codec::{CodecError, Message, ZmtpVersion};
use crate::endpoint::Endpoint;
use crate::endpoint::EndpointError;
use crate::ZmqMessage;

use futures::channel::mpsc;
use thiserror::Error;

use std::time::Duration;

pub type ZmqResult<T> = Result<T, ZmqError>;

#[derive(Error, Debug)]
pub enum ZmqError {
    #[error("Endpoint Error: {0}")]
    Endpoint(#[from] EndpointError),
    #[error("Network Error: {0}")]
    Network(#[from] std::io::Error),
    #[error("Socket bind doesn't exist: {0}")]
    NoSuchBind(Endpoint),
    #[error("Codec Error: {0}")]
    Codec(#[from] CodecError),
    #[error("Socket Error: {0}")]
    Socket(&'static str),
    #[error("{0}")]
    BufferFull(&'static str),
    #[error("Failed to deliver message ({} frames) cause of {reason}", message.len())]
    ReturnToSender {
        reason: &'static str,
        message: ZmqMessage,
    },
    // TODO refactor this.
    // Most likely Message enum should be part of public API.
    // In such case we'll be able to use this enum to return both message and multipart message in
    // same type
    #[error("Failed to deliver messages ({} messages) cause of {reason}", messages.len())]
    ReturnToSenderMultipart {
        reason: &'static str,
        messages: Vec<ZmqMessage>,
    },
    #[error("Task Error: {0}")]
    Task(#[from] TaskError),
    #[error("{0}")]
    Other(&'static str),
    #[error("No message received")]
    NoMessage,
    #[error("Invalid peer identity: must be less than 256 bytes in length")]
    PeerIdentity,
    #[error("Unsupported ZMTP version")]
    UnsupportedVersion(ZmtpVersion),
    #[error("Connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// zrpc patch: one peer of a ROUTER broke the protocol (or went over the
    /// maximum message size) and was dropped; the socket carries on.
    #[error("peer dropped: {1}")]
    PeerFailed(crate::util::PeerIdentity, String),
    /// zrpc patch: the peer's greeting announced another security mechanism.
    #[error("the peer uses the {0} security mechanism, this socket another")]
    MechanismMismatch(&'static str),
    /// zrpc patch: the peer did not finish the handshake in time.
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(Duration),
    /// zrpc patch: a ROUTER already has a peer with this identity.
    #[error("routing identity {0:?} is already in use by another connection")]
    DuplicateIdentity(crate::util::PeerIdentity),
    /// zrpc patch: an incoming connection failed before it became a peer.
    #[error("connection from {0} refused: {1}")]
    HandshakeFailed(Endpoint, #[source] Box<ZmqError>),
    /// zrpc patch: the CURVE handshake failed (a wrong key, a box that does
    /// not open, a malformed command, or the peer's ERROR).
    #[error("CURVE handshake failed: {0}")]
    Curve(String),
    /// zrpc patch: a CURVE client whose public key is not allowed.
    #[error("CURVE client key {} is not allowed", crate::curve::z85::encode(.0).unwrap_or_default())]
    CurveRefused([u8; 32]),
}

impl From<mpsc::TrySendError<Message>> for ZmqError {
    fn from(_: mpsc::TrySendError<Message>) -> Self {
        ZmqError::BufferFull("Failed to send message. Send queue full/broken")
    }
}

impl From<crate::peer_queue::SendError> for ZmqError {
    fn from(_: crate::peer_queue::SendError) -> Self {
        ZmqError::BufferFull("Failed to send message. Send queue full/broken")
    }
}

impl From<mpsc::SendError> for ZmqError {
    fn from(_: mpsc::SendError) -> Self {
        ZmqError::BufferFull("Failed to send message. Send queue full/broken")
    }
}

/// Why a socket's background task ended other than by returning.
#[derive(Error, Debug)]
pub enum TaskError {
    #[error("Internal task error: {0}")]
    Internal(#[from] Box<ZmqError>),
    #[error("Task panicked")]
    Panic,
    #[error("Task cancelled")]
    Cancelled,
}
impl From<async_rt::task::JoinError> for TaskError {
    fn from(err: async_rt::task::JoinError) -> Self {
        if err.is_panic() {
            TaskError::Panic
        } else {
            debug_assert!(err.is_cancelled());
            TaskError::Cancelled
        }
    }
}
