//! A conformance kit for any zerorpc implementation (feature
//! `conformance`; the `zrpc --conformance` command runs it): the MUSTs of
//! `PROTOCOL.md`, each check named after the rule it tests.
//!
//! - [`probe_server`] calls a **server** (plain calls with ids of every
//!   msgpack type, unknown methods, bad arguments, stray events, v1
//!   requests, introspection, a long call's heartbeats, a stream's credit);
//! - [`check_clients`] binds a checker that **clients** call (any method,
//!   `slow()`, `count(n)`) and looks at everything they send.
//!
//! Each returns a [`Report`]: one verdict per check, a failure never
//! hidden, a check that could not run never counted as passed.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use zerorpc::conformance::{probe_server, ServerProbe};
//! let report = probe_server(&ServerProbe::new("tcp://127.0.0.1:4242")).await;
//! print!("{}", report.text());
//! assert_eq!(report.failed(), 0);
//! # }
//! ```
//!
//! | file | concept |
//! |---|---|
//! | `server.rs` | probing a server |
//! | `clients.rs` | checking the clients that call a checker |
//! | `wire.rs` | events built and read by hand, ids of every type |
//! | `report.rs` | the verdicts |

mod clients;
mod report;
mod server;
mod wire;

pub use clients::check_clients;
pub use report::{Outcome, Report};
pub use server::{probe_server, ServerProbe};
