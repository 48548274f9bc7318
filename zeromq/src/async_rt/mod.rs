//! The runtime the transport runs on: tokio (upstream also offered
//! async-std and async-dispatcher; zrpc uses neither, so the fork dropped
//! them). A thin layer of names the rest of the crate uses.

pub mod task;

pub use tokio::{main, test};
