//! zrpc patch: the CURVE security mechanism (ZeroMQ RFC 26, CurveZMQ, as
//! ZMTP 3 carries it, interoperable with libzmq).
//!
//! A connection's handshake (HELLO, WELCOME, INITIATE, READY, or ERROR)
//! agrees on short-term keys; after it, every frame travels as a MESSAGE
//! command: a box of the frame's flags and bytes under those keys, with a
//! nonce that must grow with every message. The primitives are RustCrypto's
//! `crypto_box` (X25519 + XSalsa20-Poly1305, NaCl's `crypto_box`) and
//! `crypto_secretbox` (for the server's cookie); comparisons of keys are
//! constant-time (`subtle`). Nothing here is hand-written cryptography:
//! this file only lays out the commands RFC 26 specifies.
//!
//! Roles: the side that binds is usually the CURVE server, but any socket
//! can be either ([`CurveConfig`] on its [`SocketOptions`](crate::SocketOptions)).

use crate::codec::{CodecError, FramedIo, Message};
use crate::identity::PeerIdentity;
use crate::{SocketType, ZmqError, ZmqResult};

use bytes::{BufMut, Bytes, BytesMut};
use crypto_box::aead::{AeadInPlace, KeyInit};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use crypto_secretbox::XSalsa20Poly1305;
use futures::{SinkExt, StreamExt};
use rand::RngExt;
use subtle::ConstantTimeEq;

use std::collections::HashMap;
use std::convert::TryFrom;
use std::fmt;
use std::sync::Arc;

/// Bytes of a CURVE key (public or secret).
pub const KEY_LEN: usize = 32;

/// A CURVE key pair: a long-term secret key and its public key (X25519,
/// as libzmq's `zmq_curve_keypair` makes them).
#[derive(Clone)]
pub struct CurveKeyPair {
    secret: SecretKey,
    public: [u8; KEY_LEN],
}

impl CurveKeyPair {
    /// A new random key pair.
    pub fn generate() -> Self {
        Self::from_secret(random())
    }

    /// The key pair of a secret key (its public key derived from it, as
    /// libzmq's `zmq_curve_public` does).
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Self {
        let secret = SecretKey::from_bytes(secret);
        let public = secret.public_key().to_bytes();
        CurveKeyPair { secret, public }
    }

    /// The public key.
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }

    /// The secret key.
    pub fn secret(&self) -> [u8; KEY_LEN] {
        self.secret.to_bytes()
    }
}

impl fmt::Debug for CurveKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret key.
        let public = z85::encode(&self.public).unwrap_or_default();
        f.debug_struct("CurveKeyPair")
            .field("public", &public)
            .finish_non_exhaustive()
    }
}

/// Decides whether a client's long-term public key may connect (a ZAP
/// handler's job in libzmq).
pub type CurveAuthorizer = Arc<dyn Fn(&[u8; KEY_LEN]) -> bool + Send + Sync>;

/// What a socket does with CURVE.
#[derive(Clone)]
pub enum CurveConfig {
    /// The CURVE server: its key pair, and who may connect.
    Server {
        keys: CurveKeyPair,
        authorize: CurveAuthorizer,
    },
    /// A CURVE client: its key pair, and the server's public key.
    Client {
        keys: CurveKeyPair,
        server: [u8; KEY_LEN],
    },
}

impl CurveConfig {
    pub(crate) fn is_server(&self) -> bool {
        matches!(self, CurveConfig::Server { .. })
    }
}

impl fmt::Debug for CurveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurveConfig::Server { keys, .. } => {
                f.debug_struct("Server").field("keys", keys).finish()
            }
            CurveConfig::Client { keys, server } => f
                .debug_struct("Client")
                .field("keys", keys)
                .field("server", &z85::encode(server).unwrap_or_default())
                .finish(),
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill(&mut bytes[..]);
    bytes
}

/// Z85 (ZeroMQ RFC 32): how ZeroMQ writes keys as text, 5 characters for
/// every 4 bytes (a 32-byte key is 40 characters).
pub mod z85 {
    const ALPHABET: &[u8; 85] =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

    /// `data` as Z85; `None` unless its length is a multiple of 4.
    pub fn encode(data: &[u8]) -> Option<String> {
        if !data.len().is_multiple_of(4) {
            return None;
        }
        let mut out = String::with_capacity(data.len() / 4 * 5);
        for chunk in data.chunks(4) {
            let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let mut digits = [0u8; 5];
            for d in digits.iter_mut().rev() {
                *d = ALPHABET[(value % 85) as usize];
                value /= 85;
            }
            out.extend(digits.iter().map(|&b| b as char));
        }
        Some(out)
    }

    /// The bytes of Z85 text; `None` unless its length is a multiple of 5
    /// and every character and group is valid.
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.as_bytes();
        if !text.len().is_multiple_of(5) {
            return None;
        }
        let mut out = Vec::with_capacity(text.len() / 5 * 4);
        for group in text.chunks(5) {
            let mut value: u64 = 0;
            for &c in group {
                let digit = ALPHABET.iter().position(|&a| a == c)? as u64;
                value = value * 85 + digit;
            }
            out.extend_from_slice(&u32::try_from(value).ok()?.to_be_bytes());
        }
        Some(out)
    }

    /// A 32-byte key from its 40 Z85 characters.
    pub fn decode_key(text: &str) -> Option<[u8; super::KEY_LEN]> {
        decode(text.trim())?.try_into().ok()
    }
}

// ---- the handshake (RFC 26 §"The CurveZMQ handshake") ----

const HELLO: &[u8] = b"\x05HELLO";
const WELCOME: &[u8] = b"\x07WELCOME";
const INITIATE: &[u8] = b"\x08INITIATE";
const READY: &[u8] = b"\x05READY";
const ERROR: &[u8] = b"\x05ERROR";
const MESSAGE: &[u8] = b"\x07MESSAGE";

/// A box's Poly1305 tag, prepended to its ciphertext (NaCl's layout).
const TAG: usize = 16;
/// `\x07MESSAGE` and the 8-byte short nonce.
const MESSAGE_HEADER: usize = MESSAGE.len() + 8;
/// The largest handshake command accepted (an INITIATE with generous
/// metadata); anything longer is refused before it is read.
pub(crate) const MAX_HANDSHAKE_COMMAND: usize = 4096;

fn nonce24(prefix: &[u8], tail: &[u8]) -> crypto_box::Nonce {
    let mut n = [0u8; 24];
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(tail);
    n.into()
}

/// `Box[plaintext](from->to)`: the tag and the ciphertext.
fn seal(cipher: &SalsaBox, nonce: &crypto_box::Nonce, plaintext: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; TAG + plaintext.len()];
    out[TAG..].copy_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(nonce, b"", &mut out[TAG..])
        .expect("a box of any length can be sealed");
    out[..TAG].copy_from_slice(&tag);
    out
}

/// Open a box; `None` if it does not authenticate.
fn open(cipher: &SalsaBox, nonce: &crypto_box::Nonce, boxed: &[u8]) -> Option<Vec<u8>> {
    if boxed.len() < TAG {
        return None;
    }
    let mut plain = boxed[TAG..].to_vec();
    let tag = crypto_box::Tag::from_slice(&boxed[..TAG]);
    cipher
        .decrypt_in_place_detached(nonce, b"", &mut plain, tag)
        .ok()?;
    Some(plain)
}

fn salsa_box(public: &[u8; KEY_LEN], secret: &SecretKey) -> SalsaBox {
    SalsaBox::new(&PublicKey::from_bytes(*public), secret)
}

fn key(bytes: &[u8]) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&bytes[..KEY_LEN]);
    k
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn refused(why: &'static str) -> ZmqError {
    ZmqError::Curve(why.to_string())
}

/// Metadata (ZMTP properties): `name-len name value-len(4) value`, each.
fn encode_metadata(socket_type: SocketType, identity: Option<&PeerIdentity>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prop = |name: &str, value: &[u8]| {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    };
    prop("Socket-Type", socket_type.as_str().as_bytes());
    if let Some(id) = identity {
        prop("Identity", id);
    }
    out
}

fn decode_metadata(mut buf: &[u8]) -> ZmqResult<HashMap<String, Bytes>> {
    let mut props = HashMap::new();
    while !buf.is_empty() {
        let name_len = buf[0] as usize;
        let rest = &buf[1..];
        if rest.len() < name_len + 4 {
            return Err(refused("truncated metadata"));
        }
        let name = String::from_utf8_lossy(&rest[..name_len]).into_owned();
        let value_len = u32::from_be_bytes([
            rest[name_len],
            rest[name_len + 1],
            rest[name_len + 2],
            rest[name_len + 3],
        ]) as usize;
        let rest = &rest[name_len + 4..];
        if rest.len() < value_len {
            return Err(refused("truncated metadata"));
        }
        props.insert(name, Bytes::copy_from_slice(&rest[..value_len]));
        buf = &rest[value_len..];
    }
    Ok(props)
}

/// The peer's socket type and identity, checked against ours.
fn peer_of(props: &HashMap<String, Bytes>, ours: SocketType) -> ZmqResult<PeerIdentity> {
    let theirs = match props.get("Socket-Type") {
        Some(s) => SocketType::try_from(&s[..])?,
        None => return Err(ZmqError::Other("Failed to parse other socket type")),
    };
    if !ours.compatible(theirs) {
        return Err(ZmqError::Other(
            "Provided sockets combination is not compatible",
        ));
    }
    props
        .get("Identity")
        .map(|x| x.clone().try_into())
        .transpose()
        .map(Option::unwrap_or_default)
}

async fn send(raw: &mut FramedIo, command: Vec<u8>) -> ZmqResult<()> {
    raw.write_half
        .send(Message::Raw(Bytes::from(command)))
        .await?;
    Ok(())
}

/// The next handshake command; an ERROR from the peer fails the handshake
/// with its reason.
async fn receive(raw: &mut FramedIo, expected: &'static [u8]) -> ZmqResult<Bytes> {
    let command = match raw.read_half.next().await {
        Some(Ok(Message::Raw(c))) => c,
        Some(Ok(_)) => return Err(refused("expected a handshake command")),
        Some(Err(e)) => return Err(e.into()),
        None => {
            return Err(refused(
                "the peer closed the connection during the handshake (a wrong server key?)",
            ))
        }
    };
    if command.starts_with(ERROR) {
        let reason = command.get(ERROR.len() + 1..).unwrap_or_default();
        return Err(ZmqError::Curve(format!(
            "the peer refused: {}",
            String::from_utf8_lossy(reason)
        )));
    }
    if !command.starts_with(expected) {
        return Err(refused("unexpected handshake command"));
    }
    Ok(command.slice(expected.len()..))
}

/// Run the CURVE handshake on a greeted connection, then switch its codecs
/// to MESSAGE boxes. Returns the peer's identity and, on a server, the
/// client's authenticated long-term public key.
pub(crate) async fn handshake(
    raw: &mut FramedIo,
    config: &CurveConfig,
    socket_type: SocketType,
    identity: Option<&PeerIdentity>,
) -> ZmqResult<(PeerIdentity, Option<[u8; KEY_LEN]>)> {
    raw.read_half.codec_mut().raw_commands = true;
    let result = match config {
        CurveConfig::Client { keys, server } => {
            client(raw, keys, server, socket_type, identity).await
        }
        CurveConfig::Server { keys, authorize } => {
            server(raw, keys, authorize, socket_type, identity).await
        }
    };
    raw.read_half.codec_mut().raw_commands = false;
    result
}

async fn client(
    raw: &mut FramedIo,
    keys: &CurveKeyPair,
    server: &[u8; KEY_LEN],
    socket_type: SocketType,
    identity: Option<&PeerIdentity>,
) -> ZmqResult<(PeerIdentity, Option<[u8; KEY_LEN]>)> {
    // Short-term key pair for this connection (C', c').
    let short = SecretKey::from_bytes(random());
    let short_public = short.public_key().to_bytes();
    let mut nonce: u64 = 1;

    // HELLO: version, padding, C', nonce, Box[64 zeros](C'->S).
    let to_server = salsa_box(server, &short);
    let n = nonce.to_be_bytes();
    let hello_box = seal(&to_server, &nonce24(b"CurveZMQHELLO---", &n), &[0u8; 64]);
    let mut hello = Vec::with_capacity(200);
    hello.extend_from_slice(HELLO);
    hello.extend_from_slice(&[1, 0]);
    hello.extend_from_slice(&[0u8; 72]);
    hello.extend_from_slice(&short_public);
    hello.extend_from_slice(&n);
    hello.extend_from_slice(&hello_box);
    send(raw, hello).await?;
    nonce += 1;

    // WELCOME: long nonce, Box[S' + cookie](S->C').
    let welcome = receive(raw, WELCOME).await?;
    if welcome.len() != 16 + TAG + 128 {
        return Err(refused("WELCOME of the wrong length"));
    }
    let plain = open(
        &to_server,
        &nonce24(b"WELCOME-", &welcome[..16]),
        &welcome[16..],
    )
    .ok_or_else(|| refused("WELCOME does not open: wrong server key?"))?;
    let server_short = key(&plain[..32]);
    let cookie = &plain[32..128];

    // INITIATE: cookie, nonce, Box[C + vouch + metadata](C'->S'), where
    // vouch = Box[C' + S](C->S').
    let session = salsa_box(&server_short, &short);
    let vouch_nonce: [u8; 16] = random();
    let mut vouched = [0u8; 64];
    vouched[..32].copy_from_slice(&short_public);
    vouched[32..].copy_from_slice(server);
    let vouch = seal(
        &salsa_box(&server_short, &keys.secret),
        &nonce24(b"VOUCH---", &vouch_nonce),
        &vouched,
    );
    let mut plain = Vec::with_capacity(32 + 16 + 80 + 64);
    plain.extend_from_slice(&keys.public);
    plain.extend_from_slice(&vouch_nonce);
    plain.extend_from_slice(&vouch);
    plain.extend_from_slice(&encode_metadata(socket_type, identity));
    let n = nonce.to_be_bytes();
    let initiate_box = seal(&session, &nonce24(b"CurveZMQINITIATE", &n), &plain);
    let mut initiate = Vec::with_capacity(INITIATE.len() + 96 + 8 + initiate_box.len());
    initiate.extend_from_slice(INITIATE);
    initiate.extend_from_slice(cookie);
    initiate.extend_from_slice(&n);
    initiate.extend_from_slice(&initiate_box);
    send(raw, initiate).await?;
    nonce += 1;

    // READY: nonce, Box[metadata](S'->C').
    let ready = receive(raw, READY).await?;
    if ready.len() < 8 + TAG {
        return Err(refused("READY too short"));
    }
    let peer_nonce = u64::from_be_bytes(ready[..8].try_into().expect("8 bytes"));
    let metadata = open(
        &session,
        &nonce24(b"CurveZMQREADY---", &ready[..8]),
        &ready[8..],
    )
    .ok_or_else(|| refused("READY does not open"))?;
    let peer = peer_of(&decode_metadata(&metadata)?, socket_type)?;
    install(
        raw,
        (&server_short, &short),
        b"CurveZMQMESSAGEC",
        nonce,
        b"CurveZMQMESSAGES",
        peer_nonce,
    );
    Ok((peer, None))
}

async fn server(
    raw: &mut FramedIo,
    keys: &CurveKeyPair,
    authorize: &CurveAuthorizer,
    socket_type: SocketType,
    identity: Option<&PeerIdentity>,
) -> ZmqResult<(PeerIdentity, Option<[u8; KEY_LEN]>)> {
    // HELLO: version(2), padding(72), C'(32), nonce(8), box(80).
    let hello = receive(raw, HELLO).await?;
    if hello.len() != 2 + 72 + 32 + 8 + 80 {
        return Err(refused("HELLO of the wrong length"));
    }
    if hello[0] != 1 {
        return Err(refused("unsupported CurveZMQ version"));
    }
    let client_short = key(&hello[74..106]);
    let from_client = salsa_box(&client_short, &keys.secret);
    let zeros = open(
        &from_client,
        &nonce24(b"CurveZMQHELLO---", &hello[106..114]),
        &hello[114..],
    )
    .ok_or_else(|| refused("HELLO does not open: the client has another server key"))?;
    if !same(&zeros, &[0u8; 64]) {
        return Err(refused("HELLO signature is not zeros"));
    }

    // WELCOME: our short-term key and a cookie only we can open (this
    // connection's cookie key: a cookie is good on its own connection only).
    let short = SecretKey::from_bytes(random());
    let cookie_key = crypto_secretbox::Key::from(random::<32>());
    let cookie_cipher = XSalsa20Poly1305::new(&cookie_key);
    let cookie_nonce: [u8; 16] = random();
    let mut cookie_plain = [0u8; 64];
    cookie_plain[..32].copy_from_slice(&client_short);
    cookie_plain[32..].copy_from_slice(&short.to_bytes());
    let mut cookie = Vec::with_capacity(96);
    cookie.extend_from_slice(&cookie_nonce);
    let mut sealed = cookie_plain.to_vec();
    let tag = cookie_cipher
        .encrypt_in_place_detached(&nonce24(b"COOKIE--", &cookie_nonce), b"", &mut sealed)
        .expect("a cookie can be sealed");
    cookie.extend_from_slice(&tag);
    cookie.extend_from_slice(&sealed);
    let mut welcome_plain = Vec::with_capacity(128);
    welcome_plain.extend_from_slice(&short.public_key().to_bytes());
    welcome_plain.extend_from_slice(&cookie);
    let welcome_nonce: [u8; 16] = random();
    let welcome_box = seal(
        &from_client,
        &nonce24(b"WELCOME-", &welcome_nonce),
        &welcome_plain,
    );
    let mut welcome = Vec::with_capacity(WELCOME.len() + 16 + welcome_box.len());
    welcome.extend_from_slice(WELCOME);
    welcome.extend_from_slice(&welcome_nonce);
    welcome.extend_from_slice(&welcome_box);
    send(raw, welcome).await?;

    // INITIATE: cookie(96), nonce(8), Box[C + vouch + metadata](C'->S').
    let initiate = receive(raw, INITIATE).await?;
    if initiate.len() < 96 + 8 + TAG + 32 + 16 + 80 {
        return Err(refused("INITIATE too short"));
    }
    let (their_cookie, rest) = initiate.split_at(96);
    let mut opened = their_cookie[32..].to_vec();
    let cookie_tag = crypto_secretbox::Tag::from_slice(&their_cookie[16..32]);
    cookie_cipher
        .decrypt_in_place_detached(
            &nonce24(b"COOKIE--", &their_cookie[..16]),
            b"",
            &mut opened,
            cookie_tag,
        )
        .map_err(|_| refused("INITIATE carries a cookie that is not this connection's"))?;
    if !same(&opened[..32], &client_short) || !same(&opened[32..], &short.to_bytes()) {
        return Err(refused("INITIATE cookie does not match"));
    }
    let session = salsa_box(&client_short, &short);
    let peer_nonce = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
    let plain = open(
        &session,
        &nonce24(b"CurveZMQINITIATE", &rest[..8]),
        &rest[8..],
    )
    .ok_or_else(|| refused("INITIATE does not open"))?;
    let client_long = key(&plain[..32]);
    let vouched = open(
        &salsa_box(&client_long, &short),
        &nonce24(b"VOUCH---", &plain[32..48]),
        &plain[48..128],
    )
    .ok_or_else(|| refused("the vouch does not open"))?;
    if !same(&vouched[..32], &client_short) || !same(&vouched[32..64], &keys.public) {
        return Err(refused("the vouch is for another connection or server"));
    }
    if !authorize(&client_long) {
        let reason = b"client key not authorized";
        let mut error = Vec::with_capacity(ERROR.len() + 1 + reason.len());
        error.extend_from_slice(ERROR);
        error.push(reason.len() as u8);
        error.extend_from_slice(reason);
        let _ = send(raw, error).await;
        return Err(ZmqError::CurveRefused(client_long));
    }
    let peer = peer_of(&decode_metadata(&plain[128..])?, socket_type)?;

    // READY: nonce, Box[metadata](S'->C').
    let n = 1u64.to_be_bytes();
    let ready_box = seal(
        &session,
        &nonce24(b"CurveZMQREADY---", &n),
        &encode_metadata(socket_type, identity),
    );
    let mut ready = Vec::with_capacity(READY.len() + 8 + ready_box.len());
    ready.extend_from_slice(READY);
    ready.extend_from_slice(&n);
    ready.extend_from_slice(&ready_box);
    send(raw, ready).await?;
    install(
        raw,
        (&client_short, &short),
        b"CurveZMQMESSAGES",
        2,
        b"CurveZMQMESSAGEC",
        peer_nonce,
    );
    Ok((peer, Some(client_long)))
}

/// Switch both halves of the connection to MESSAGE boxes between the
/// short-term keys (ours, and the peer's public one).
fn install(
    raw: &mut FramedIo,
    (peer_short, short): (&[u8; KEY_LEN], &SecretKey),
    tx_prefix: &'static [u8; 16],
    tx_nonce: u64,
    rx_prefix: &'static [u8; 16],
    rx_nonce: u64,
) {
    raw.write_half.encoder_mut().curve_tx = Some(CurveTx {
        cipher: salsa_box(peer_short, short),
        prefix: tx_prefix,
        nonce: tx_nonce,
    });
    raw.read_half.codec_mut().curve_rx = Some(CurveRx {
        cipher: salsa_box(peer_short, short),
        prefix: rx_prefix,
        last: rx_nonce,
    });
}

// ---- MESSAGE boxes ----

/// Seals outgoing frames.
pub(crate) struct CurveTx {
    cipher: SalsaBox,
    prefix: &'static [u8; 16],
    nonce: u64,
}

impl CurveTx {
    /// The MESSAGE command carrying `data` with `flags` (bit 0: more,
    /// bit 1: command).
    pub(crate) fn seal(&mut self, flags: u8, data: &[u8]) -> Bytes {
        let short = self.nonce.to_be_bytes();
        self.nonce += 1;
        let mut out = BytesMut::with_capacity(MESSAGE_HEADER + TAG + 1 + data.len());
        out.put_slice(MESSAGE);
        out.put_slice(&short);
        out.put_bytes(0, TAG);
        out.put_u8(flags);
        out.put_slice(data);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                &nonce24(self.prefix, &short),
                b"",
                &mut out[MESSAGE_HEADER + TAG..],
            )
            .expect("a message of any length can be sealed");
        out[MESSAGE_HEADER..MESSAGE_HEADER + TAG].copy_from_slice(&tag);
        out.freeze()
    }
}

impl fmt::Debug for CurveTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveTx")
            .field("nonce", &self.nonce)
            .finish()
    }
}

/// Opens incoming frames.
pub(crate) struct CurveRx {
    cipher: SalsaBox,
    prefix: &'static [u8; 16],
    /// The last nonce seen: each must be greater.
    last: u64,
}

impl CurveRx {
    /// The flags and bytes of a MESSAGE command (`frame` is the whole
    /// command: `\x07MESSAGE`, nonce, box).
    pub(crate) fn open(&mut self, mut frame: BytesMut) -> Result<(u8, Bytes), CodecError> {
        if frame.len() < MESSAGE_HEADER + TAG + 1 || !frame.starts_with(MESSAGE) {
            return Err(CodecError::Decode(
                "a CURVE connection carries only MESSAGE commands",
            ));
        }
        let short: [u8; 8] = frame[MESSAGE.len()..MESSAGE_HEADER]
            .try_into()
            .expect("8 bytes");
        let nonce = u64::from_be_bytes(short);
        if nonce <= self.last {
            return Err(CodecError::Decode("CURVE message nonce did not increase"));
        }
        let tag = *crypto_box::Tag::from_slice(&frame[MESSAGE_HEADER..MESSAGE_HEADER + TAG]);
        let mut body = frame.split_off(MESSAGE_HEADER + TAG);
        self.cipher
            .decrypt_in_place_detached(&nonce24(self.prefix, &short), b"", &mut body, &tag)
            .map_err(|_| CodecError::Decode("CURVE message does not authenticate"))?;
        self.last = nonce;
        let flags = body[0];
        Ok((flags, body.split_off(1).freeze()))
    }
}

impl fmt::Debug for CurveRx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveRx").field("last", &self.last).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z85_matches_rfc_32() {
        // The RFC's test vector.
        let bytes = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(z85::encode(&bytes).unwrap(), "HelloWorld");
        assert_eq!(z85::decode("HelloWorld").unwrap(), bytes);
        assert_eq!(z85::encode(&[1, 2, 3]), None);
        assert_eq!(z85::decode("Hell"), None);
        assert_eq!(z85::decode("Hell~"), None, "not in the alphabet");
        assert_eq!(z85::decode("#####"), None, "more than 32 bits");
    }

    #[test]
    fn key_pairs_match_libzmqs_test_keys() {
        // The key pairs of libzmq's tests/testutil_security (and RFC 26):
        // a secret key gives this public key.
        let secret = z85::decode_key("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6").unwrap();
        let pair = CurveKeyPair::from_secret(secret);
        assert_eq!(
            z85::encode(&pair.public()).unwrap(),
            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
        );
        assert!(
            !format!("{pair:?}").contains("JTKVSB"),
            "the secret key leaked"
        );
    }

    /// Two ends of an in-memory connection, already framed, greeted as a
    /// CURVE server (`server`) and a raw peer (`peer`).
    async fn greeted(server_keys: &CurveKeyPair) -> (FramedIo, FramedIo, CurveConfig) {
        use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};
        let (a, b) = tokio::io::duplex(1 << 20);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        let config = CurveConfig::Server {
            keys: server_keys.clone(),
            authorize: Arc::new(|_| true),
        };
        let mut options = crate::SocketOptions::default();
        options.curve(Some(config.clone()));
        let options = Arc::new(options);
        let mut server = FramedIo::new(
            Box::new(ar.compat()),
            Box::new(aw.compat_write()),
            options.clone(),
        );
        let mut client_options = crate::SocketOptions::default();
        client_options.curve(Some(CurveConfig::Client {
            keys: CurveKeyPair::generate(),
            server: server_keys.public(),
        }));
        let client_options = Arc::new(client_options);
        let mut peer = FramedIo::new(
            Box::new(br.compat()),
            Box::new(bw.compat_write()),
            client_options.clone(),
        );
        let (s, p) = futures::join!(
            crate::util::greet_exchange(&mut server, &options),
            crate::util::greet_exchange(&mut peer, &client_options)
        );
        s.unwrap();
        p.unwrap();
        peer.read_half.codec_mut().raw_commands = true;
        (server, peer, config)
    }

    /// A hand-driven client: its short-term key and the commands it sends.
    struct Manual {
        short: SecretKey,
        keys: CurveKeyPair,
        server: [u8; KEY_LEN],
    }

    impl Manual {
        fn new(server: [u8; KEY_LEN]) -> Self {
            Manual {
                short: SecretKey::from_bytes(random()),
                keys: CurveKeyPair::generate(),
                server,
            }
        }

        fn hello(&self) -> Vec<u8> {
            let to_server = salsa_box(&self.server, &self.short);
            let n = 1u64.to_be_bytes();
            let boxed = seal(&to_server, &nonce24(b"CurveZMQHELLO---", &n), &[0u8; 64]);
            let mut hello = HELLO.to_vec();
            hello.extend_from_slice(&[1, 0]);
            hello.extend_from_slice(&[0u8; 72]);
            hello.extend_from_slice(&self.short.public_key().to_bytes());
            hello.extend_from_slice(&n);
            hello.extend_from_slice(&boxed);
            hello
        }

        /// The server's short-term key and cookie, from its WELCOME.
        fn welcome(&self, welcome: &[u8]) -> ([u8; KEY_LEN], Vec<u8>) {
            let body = &welcome[WELCOME.len()..];
            let plain = open(
                &salsa_box(&self.server, &self.short),
                &nonce24(b"WELCOME-", &body[..16]),
                &body[16..],
            )
            .expect("WELCOME opens");
            (key(&plain[..32]), plain[32..128].to_vec())
        }

        fn initiate(&self, server_short: &[u8; KEY_LEN], cookie: &[u8], nonce: u64) -> Vec<u8> {
            let vouch_nonce: [u8; 16] = random();
            let mut vouched = self.short.public_key().to_bytes().to_vec();
            vouched.extend_from_slice(&self.server);
            let vouch = seal(
                &salsa_box(server_short, &self.keys.secret),
                &nonce24(b"VOUCH---", &vouch_nonce),
                &vouched,
            );
            let mut plain = self.keys.public.to_vec();
            plain.extend_from_slice(&vouch_nonce);
            plain.extend_from_slice(&vouch);
            plain.extend_from_slice(&encode_metadata(SocketType::DEALER, None));
            let n = nonce.to_be_bytes();
            let boxed = seal(
                &salsa_box(server_short, &self.short),
                &nonce24(b"CurveZMQINITIATE", &n),
                &plain,
            );
            let mut out = INITIATE.to_vec();
            out.extend_from_slice(cookie);
            out.extend_from_slice(&n);
            out.extend_from_slice(&boxed);
            out
        }
    }

    async fn send_raw(peer: &mut FramedIo, command: Vec<u8>) {
        peer.write_half
            .send(Message::Raw(command.into()))
            .await
            .unwrap();
    }

    async fn next_raw(peer: &mut FramedIo) -> Bytes {
        match peer.read_half.next().await {
            Some(Ok(Message::Raw(c))) => c,
            other => panic!("expected a command, got {other:?}"),
        }
    }

    /// Run the server's handshake against what `peer` does; its result.
    async fn serve<F, Fut>(peer_side: F) -> ZmqResult<(PeerIdentity, Option<[u8; KEY_LEN]>)>
    where
        F: FnOnce(FramedIo, [u8; KEY_LEN]) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let server_keys = CurveKeyPair::generate();
        let (mut server, peer, config) = greeted(&server_keys).await;
        let server_side = handshake(&mut server, &config, SocketType::ROUTER, None);
        let peer_side = peer_side(peer, server_keys.public());
        let (result, ()) = futures::join!(server_side, peer_side);
        result
    }

    #[tokio::test]
    async fn a_hand_driven_client_completes_the_handshake() {
        let result = serve(|mut peer, server| async move {
            let me = Manual::new(server);
            send_raw(&mut peer, me.hello()).await;
            let (server_short, cookie) = me.welcome(&next_raw(&mut peer).await);
            send_raw(&mut peer, me.initiate(&server_short, &cookie, 2)).await;
            assert!(next_raw(&mut peer).await.starts_with(READY));
        })
        .await;
        assert!(result.unwrap().1.is_some(), "the client key is known");
    }

    #[tokio::test]
    async fn hostile_handshakes_are_refused_without_panic() {
        // Each peer misbehaves in one way; the server's handshake must fail
        // (and must not hang: the peer closes after sending).
        type Step = fn(&Manual) -> Vec<u8>;
        let bad_hellos: Vec<(&str, Step)> = vec![
            ("truncated HELLO", |m| m.hello()[..150].to_vec()),
            ("HELLO too long", |m| {
                let mut h = m.hello();
                h.push(0);
                h
            }),
            ("HELLO with a garbage box", |m| {
                let mut h = m.hello();
                let at = h.len() - 10;
                h[at] ^= 0xff;
                h
            }),
            ("HELLO of another version", |m| {
                let mut h = m.hello();
                h[HELLO.len()] = 2;
                h
            }),
            ("WELCOME instead of HELLO", |_| {
                let mut w = WELCOME.to_vec();
                w.extend_from_slice(&[0u8; 160]);
                w
            }),
            ("a command with no name", |_| vec![]),
        ];
        for (what, hello) in bad_hellos {
            let result = serve(move |mut peer, server| async move {
                let me = Manual::new(server);
                send_raw(&mut peer, hello(&me)).await;
                drop(peer);
            })
            .await;
            assert!(result.is_err(), "{what} was accepted");
        }
    }

    #[tokio::test]
    async fn bad_initiates_are_refused() {
        // A cookie from another connection (a replay), a box that does not
        // open, a vouch for another server, a truncated INITIATE.
        let mut old_cookie = Vec::new();
        let _ = serve(|mut peer, server| {
            let old_cookie = &mut old_cookie;
            async move {
                let me = Manual::new(server);
                send_raw(&mut peer, me.hello()).await;
                let (_, cookie) = me.welcome(&next_raw(&mut peer).await);
                *old_cookie = cookie;
            }
        })
        .await;
        for case in 0..4 {
            let old_cookie = old_cookie.clone();
            let result = serve(move |mut peer, server| async move {
                let mut me = Manual::new(server);
                send_raw(&mut peer, me.hello()).await;
                let (server_short, cookie) = me.welcome(&next_raw(&mut peer).await);
                let initiate = match case {
                    0 => me.initiate(&server_short, &old_cookie, 2),
                    1 => {
                        let mut i = me.initiate(&server_short, &cookie, 2);
                        let last = i.len() - 1;
                        i[last] ^= 1;
                        i
                    }
                    2 => {
                        me.server = CurveKeyPair::generate().public();
                        me.initiate(&server_short, &cookie, 2)
                    }
                    _ => me.initiate(&server_short, &cookie, 2)[..120].to_vec(),
                };
                send_raw(&mut peer, initiate).await;
                drop(peer);
            })
            .await;
            assert!(result.is_err(), "bad INITIATE {case} was accepted");
        }
    }

    #[tokio::test]
    async fn oversized_handshake_commands_are_refused_before_they_are_read() {
        let result = serve(|mut peer, _| async move {
            // A command frame header claiming 1 MiB.
            use futures::AsyncWriteExt;
            let _ = &mut peer;
            let mut frame = vec![0b110];
            frame.extend_from_slice(&(1u64 << 20).to_be_bytes());
            frame.extend_from_slice(HELLO);
            let (_, write) = peer.into_parts();
            let mut io = write.into_inner();
            let _ = io.write_all(&frame).await;
            let _ = io.flush().await;
        })
        .await;
        match result {
            Err(ZmqError::Codec(CodecError::Decode(why))) => assert!(why.contains("too long")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn random_commands_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let len = (next() % 400) as usize;
            let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half of them start like a real command.
            if round % 2 == 0 && junk.len() > 6 {
                junk[..6].copy_from_slice(HELLO);
            }
            let result = serve(move |mut peer, _| async move {
                send_raw(&mut peer, junk).await;
                drop(peer);
            })
            .await;
            assert!(result.is_err(), "junk accepted in round {round}");
        }
    }

    #[test]
    fn messages_round_trip_and_nonces_must_grow() {
        let (a, b) = (CurveKeyPair::generate(), CurveKeyPair::generate());
        let ab = salsa_box(&b.public, &a.secret);
        let ba = salsa_box(&a.public, &b.secret);
        let mut tx = CurveTx {
            cipher: ab,
            prefix: b"CurveZMQMESSAGEC",
            nonce: 3,
        };
        let mut rx = CurveRx {
            cipher: ba,
            prefix: b"CurveZMQMESSAGEC",
            last: 2,
        };
        let first = tx.seal(1, b"hello");
        let second = tx.seal(0, b"");
        assert_eq!(first.len(), MESSAGE_HEADER + TAG + 1 + 5);
        let (flags, data) = rx.open(BytesMut::from(&first[..])).unwrap();
        assert_eq!((flags, &data[..]), (1, &b"hello"[..]));
        // Replayed: refused.
        assert!(rx.open(BytesMut::from(&first[..])).is_err());
        let (flags, data) = rx.open(BytesMut::from(&second[..])).unwrap();
        assert_eq!((flags, data.len()), (0, 0));
        // Tampered, truncated, not a MESSAGE: refused, no panic.
        let mut bad = BytesMut::from(&tx.seal(0, b"x")[..]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(rx.open(bad).is_err());
        assert!(rx.open(BytesMut::from(&b"\x07MESSAGE"[..])).is_err());
        assert!(rx
            .open(BytesMut::from(&b"\x05HELLOxxxxxxxxxxxxxxxxxxxxxxxxxxx"[..]))
            .is_err());
    }
}
