//! `zrpc --conformance`: runs the library's conformance kit
//! ([`zerorpc::conformance`]) and prints its report, one line per check or
//! one JSON object; exit 0 only when no check failed.

use crate::CliError;
use serde_json::json;
use std::time::Duration;
use zerorpc::conformance::{check_clients, probe_server, Outcome, Report, ServerProbe};
use zerorpc::Value;

/// What `--conformance` was asked to check.
pub(crate) struct Request {
    pub(crate) connects: Vec<String>,
    pub(crate) binds: Vec<String>,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) sleep_method: String,
    pub(crate) items_method: String,
    pub(crate) stream: Option<(String, Vec<Value>)>,
    pub(crate) json: bool,
}

pub(crate) async fn run(req: Request) -> Result<(), CliError> {
    let report = match (req.connects.as_slice(), req.binds.as_slice()) {
        ([endpoint], []) => {
            let probe = ServerProbe {
                endpoint: endpoint.clone(),
                period: req.period,
                sleep_method: req.sleep_method,
                items_method: req.items_method,
                stream: req.stream,
            };
            probe_server(&probe).await
        }
        ([], [endpoint]) => check_clients(endpoint, req.period, req.timeout).await?,
        _ => {
            return Err(CliError::Usage(
                "--conformance takes one server to probe (ADDRESS or --connect) or one --bind to check clients on".into(),
            ))
        }
    };
    crate::output::emit(&match req.json {
        true => to_json(&report),
        false => report.text(),
    });
    match report.failed() {
        0 => Ok(()),
        n => Err(CliError::Other(format!("{n} conformance checks failed"))),
    }
}

/// The report for scripts: every check, and the counts.
fn to_json(report: &Report) -> String {
    let checks: Vec<serde_json::Value> = report
        .checks()
        .map(|(name, outcome)| match outcome {
            Outcome::Pass => json!({"name": name, "result": "pass"}),
            Outcome::Fail(seen) => json!({"name": name, "result": "fail", "detail": seen}),
            Outcome::NotRun(why) => json!({"name": name, "result": "not run", "detail": why}),
        })
        .collect();
    let v = json!({
        "checks": checks,
        "passed": report.passed(),
        "failed": report.failed(),
        "not_run": report.not_run(),
    });
    format!("{v}\n")
}
