//! `zrpc --conformance`: a checker for any zerorpc implementation.
//!
//! - `zrpc --conformance ADDR [STREAM_METHOD ARGS...]` probes a **server**
//!   (`server.rs`);
//! - `zrpc --conformance --bind ADDR` is a checking server for any
//!   **client** that calls it (`client.rs`).
//!
//! Each prints one line per check (`report.rs`) and exits 0 only when
//! nothing failed. What is checked is PROTOCOL.md's MUSTs; each check's
//! name says which rule.

mod client;
mod report;
mod server;
mod wire;

use super::CliError;
use crate::Value;
use std::time::Duration;

/// What `--conformance` was asked to check.
pub(super) struct Request {
    pub(super) connects: Vec<String>,
    pub(super) binds: Vec<String>,
    pub(super) period: Duration,
    pub(super) timeout: Duration,
    pub(super) sleep_method: String,
    pub(super) stream: Option<(String, Vec<Value>)>,
    pub(super) json: bool,
}

pub(super) async fn run(req: Request) -> Result<(), CliError> {
    let report = match (req.connects.as_slice(), req.binds.as_slice()) {
        ([endpoint], []) => {
            let plan = server::Plan {
                endpoint: endpoint.clone(),
                period: req.period,
                sleep_method: req.sleep_method,
                stream: req.stream,
            };
            server::probe(&plan).await
        }
        ([], [endpoint]) => client::check(endpoint, req.period, req.timeout).await?,
        _ => {
            return Err(CliError::Usage(
                "--conformance takes one server to probe (ADDRESS or --connect) or one --bind to check clients on".into(),
            ))
        }
    };
    super::output::emit(&if req.json {
        report.json()
    } else {
        report.text()
    });
    match report.failed() {
        0 => Ok(()),
        n => Err(CliError::Other(format!("{n} conformance checks failed"))),
    }
}
