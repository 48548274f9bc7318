//! `zrpc --broker --frontend ADDRESS --backend ADDRESS`: clients connect to
//! the frontend, workers (`zrpc --server --connect BACKEND`, or zerorpc
//! servers that connect) to the backend; every event of a call stays on the
//! worker that took it.

use crate::flags::Opts;
use crate::security::read_key;
use crate::CliError;
use std::time::Duration;
use zerorpc::security::{Curve, CurveKeyPair};
use zerorpc::Broker;

pub(crate) async fn run(opts: &Opts, heartbeat: Option<Duration>) -> Result<(), CliError> {
    if opts.frontend.is_empty() || opts.backend.is_empty() {
        return Err(CliError::Usage(
            "--broker needs --frontend ADDRESS (clients) and --backend ADDRESS (workers)".into(),
        ));
    }
    if let Some(extra) = opts.rest.first() {
        return Err(CliError::Usage(format!(
            "--broker takes no address, method or service (got {extra:?}): use --frontend and --backend"
        )));
    }
    let mut builder = Broker::builder().heartbeat(heartbeat);
    for ep in &opts.frontend {
        builder = builder.frontend(ep);
    }
    for ep in &opts.backend {
        builder = builder.backend(ep);
    }
    let (front, back) = curves(opts)?;
    if let Some(c) = front {
        builder = builder.frontend_curve(c);
    }
    if let Some(c) = back {
        builder = builder.backend_curve(c);
    }
    if let Some(n) = opts.max_message_size {
        builder = builder.max_message_size(n);
    }
    if let Some(n) = opts.send_queue {
        builder = builder.send_queue(n);
    }
    if let Some(s) = opts.handshake_timeout {
        builder = builder.handshake_timeout(crate::seconds(s, "handshake-timeout")?);
    }
    if let Some(n) = opts.pool_queue {
        builder = builder.queue(n);
    }
    if let Some(addr) = &opts.metrics {
        crate::serve_metrics(addr)?;
    }
    let broker = builder.start().await?;
    eprintln!(
        "brokering: clients at {}, workers at {}",
        broker.frontend().join(", "),
        broker.backend().join(", ")
    );
    crate::wait_for_signal().await;
    eprintln!("stopping: finishing calls in flight (up to 10s)");
    if let Err(e) = broker.close(Duration::from_secs(10)).await {
        eprintln!("zrpc: {e}");
    }
    Ok(())
}

/// CURVE on each side: the frontend as a server's (`--curve-secret` with
/// `--curve-allow`), the backend with its own allow-list of worker keys
/// (`--backend-curve-allow`); one secret key for both.
fn curves(opts: &Opts) -> Result<(Option<Curve>, Option<Curve>), CliError> {
    if opts.curve_server.is_some() {
        return Err(CliError::Usage(
            "--curve-server is for clients; a broker is a CURVE server on each side (--curve-secret)".into(),
        ));
    }
    let front_wanted = !opts.curve_allow.is_empty() || opts.curve_allow_any;
    let back_wanted = !opts.backend_curve_allow.is_empty() || opts.backend_curve_allow_any;
    let Some(secret) = &opts.curve_secret else {
        if front_wanted || back_wanted {
            return Err(CliError::Usage(
                "--curve-allow and --backend-curve-allow need --curve-secret (the broker's secret key)".into(),
            ));
        }
        return Ok((None, None));
    };
    if !front_wanted && !back_wanted {
        return Err(CliError::Usage(
            "a CURVE broker lets in nobody: add --curve-allow KEY (clients) and/or --backend-curve-allow KEY (workers)".into(),
        ));
    }
    let keys = CurveKeyPair::from_secret(read_key(secret, "--curve-secret", true)?);
    let side = |allow: &[String], any: bool, flag: &str| -> Result<Option<Curve>, CliError> {
        if allow.is_empty() && !any {
            return Ok(None);
        }
        let mut curve = Curve::server(keys.clone());
        if any {
            curve = curve.allow_any();
        }
        for key in allow {
            curve = curve.allow(read_key(key, flag, false)?);
        }
        Ok(Some(curve))
    };
    Ok((
        side(&opts.curve_allow, opts.curve_allow_any, "--curve-allow")?,
        side(
            &opts.backend_curve_allow,
            opts.backend_curve_allow_any,
            "--backend-curve-allow",
        )?,
    ))
}
