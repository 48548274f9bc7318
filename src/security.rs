//! CurveZMQ: encryption of every byte between two peers, and a server that
//! only lets in the client keys it knows (ZeroMQ RFC 26, as libzmq speaks
//! it: a libzmq, pyzmq or CZMQ peer with the same keys connects).
//!
//! Every builder takes a [`Curve`] ([`ServerBuilder::curve`](crate::ServerBuilder::curve),
//! [`ClientBuilder::curve`](crate::ClientBuilder::curve), and the one-way
//! builders): the CURVE *server* side (usually the one that binds) holds a
//! key pair and an allow-list, each CURVE *client* its own key pair and the
//! server's public key.
//!
//! ```
//! use zerorpc::security::{Curve, CurveKeyPair};
//! let server_keys = CurveKeyPair::generate();
//! let client_keys = CurveKeyPair::generate();
//! let on_server = Curve::server(server_keys.clone()).allow(client_keys.public());
//! let on_client = Curve::client(client_keys, server_keys.public());
//! # let _ = (on_server, on_client);
//! ```
//!
//! What it protects: the content of every message (requests, replies,
//! heartbeats, one-way events) against reading and tampering on the wire,
//! and the server against clients whose key it was not given. What it does
//! not: which hosts talk and how much (traffic analysis), a stolen secret
//! key, or what an allowed client asks for (authorisation beyond "this key
//! may connect" is the handlers' job: [`Context::client_key`](crate::Context::client_key)).

use crate::error::Error;
use std::collections::HashSet;
use std::sync::Arc;

pub use zerorpc_zeromq::curve::{z85, CurveKeyPair, KEY_LEN};

/// A CURVE key (public or secret): 32 bytes.
pub type Key = [u8; KEY_LEN];

/// How a socket uses CURVE.
#[derive(Clone)]
pub struct Curve {
    role: Role,
}

#[derive(Clone)]
enum Role {
    Server { keys: CurveKeyPair, allow: Allow },
    Client { keys: CurveKeyPair, server: Key },
}

#[derive(Clone)]
enum Allow {
    /// Only these client keys (possibly none yet).
    Keys(HashSet<Key>),
    /// Any client that completes the handshake.
    Any,
    /// The application decides.
    Custom(Arc<dyn Fn(&Key) -> bool + Send + Sync>),
}

impl Curve {
    /// The CURVE server side, with its key pair. It lets in no client until
    /// told which: [`Curve::allow`], [`Curve::allow_any`] or
    /// [`Curve::authorize`].
    pub fn server(keys: CurveKeyPair) -> Curve {
        Curve {
            role: Role::Server {
                keys,
                allow: Allow::Keys(HashSet::new()),
            },
        }
    }

    /// A CURVE client side: its own key pair, and the server's public key.
    pub fn client(keys: CurveKeyPair, server_public: Key) -> Curve {
        Curve {
            role: Role::Client {
                keys,
                server: server_public,
            },
        }
    }

    /// Let in the client with this public key (repeatable).
    pub fn allow(mut self, client_public: Key) -> Curve {
        if let Role::Server { allow, .. } = &mut self.role {
            match allow {
                Allow::Keys(keys) => {
                    keys.insert(client_public);
                }
                other => *other = Allow::Keys(HashSet::from([client_public])),
            }
        }
        self
    }

    /// Let in any client that completes the handshake (it still gets
    /// encryption; its key is still given to handlers).
    pub fn allow_any(mut self) -> Curve {
        if let Role::Server { allow, .. } = &mut self.role {
            *allow = Allow::Any;
        }
        self
    }

    /// Decide yourself, per connection, from the client's public key (what
    /// a ZAP handler does for libzmq).
    pub fn authorize(mut self, decide: impl Fn(&Key) -> bool + Send + Sync + 'static) -> Curve {
        if let Role::Server { allow, .. } = &mut self.role {
            *allow = Allow::Custom(Arc::new(decide));
        }
        self
    }

    /// This side's public key.
    pub fn public_key(&self) -> Key {
        match &self.role {
            Role::Server { keys, .. } | Role::Client { keys, .. } => keys.public(),
        }
    }

    /// Is this the CURVE server side?
    pub fn is_server(&self) -> bool {
        matches!(self.role, Role::Server { .. })
    }

    /// The transport's configuration; a server that lets in nobody is a
    /// mistake, reported when the socket starts.
    pub(crate) fn config(&self) -> Result<zerorpc_zeromq::curve::CurveConfig, Error> {
        use zerorpc_zeromq::curve::CurveConfig;
        Ok(match &self.role {
            Role::Client { keys, server } => CurveConfig::Client {
                keys: keys.clone(),
                server: *server,
            },
            Role::Server { keys, allow } => {
                let authorize: zerorpc_zeromq::curve::CurveAuthorizer = match allow {
                    Allow::Keys(keys) if keys.is_empty() => {
                        return Err(Error::Config(
                            "a CURVE server lets in no client: allow client keys, allow any, \
                             or authorize"
                                .into(),
                        ))
                    }
                    Allow::Keys(keys) => {
                        let keys = keys.clone();
                        Arc::new(move |k| keys.contains(k))
                    }
                    Allow::Any => Arc::new(|_| true),
                    Allow::Custom(f) => {
                        let f = f.clone();
                        Arc::new(move |k| f(k))
                    }
                };
                CurveConfig::Server {
                    keys: keys.clone(),
                    authorize,
                }
            }
        })
    }
}

impl std::fmt::Debug for Curve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let public = z85::encode(&self.public_key()).unwrap_or_default();
        let role = if self.is_server() { "server" } else { "client" };
        f.debug_struct("Curve")
            .field("role", &role)
            .field("public", &public)
            .finish_non_exhaustive()
    }
}

/// Read a key: 40 Z85 characters (how libzmq and `zrpc --keygen` write
/// them), or 64 hex digits.
pub fn parse_key(text: &str) -> Result<Key, Error> {
    let text = text.trim();
    if let Some(key) = z85::decode_key(text) {
        return Ok(key);
    }
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; KEY_LEN];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| Error::Config("not a key".into()))?;
        }
        return Ok(key);
    }
    Err(Error::Config(format!(
        "not a CURVE key (40 Z85 characters or 64 hex digits): {:?}",
        crate::error::clip(text, 50)
    )))
}
