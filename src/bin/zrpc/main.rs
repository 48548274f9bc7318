//! The `zrpc` command: a drop-in for the `zerorpc` command line, built on
//! the library's public API.
//!
//! | file | concept |
//! |---|---|
//! | `main.rs` | the command: which role the flags ask for, running it, its one-line errors and exit codes |
//! | `flags` | the flags ([`clap`]) |
//! | `builtins` | the built-in services: `time`, `calc`, `echo` |
//! | `exec` | shell commands served as methods (`--exec`) |
//! | `oneway` | `--push`, `--pull`, `--pub`, `--sub` |
//! | `output` | what it prints: results, listings, escaped peer text |
//! | `json` | parameters and results as JSON |
//! | `security` | CURVE keys and the rule for `--exec` in clear text |
//! | `conformance` | `--conformance`, over [`zerorpc::conformance`] |

// The flags' doc comments are their `--help` text, where `[ADDRESS]` is a
// usage pattern, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod broker;
mod builtins;
mod conformance;
mod exec;
mod flags;
mod json;
mod oneway;
mod output;
mod security;

use clap::Parser;
use flags::Opts;
use json::infer_cli_arg;
use std::time::Duration;
use zerorpc::client::{CallOptions, Client, Response};
use zerorpc::error::Error;
use zerorpc::server::Server;
use zerorpc::Value;

fn main() {
    std::process::exit(run_main());
}

/// Parse `std::env::args_os`, run, and return the exit code.
fn run_main() -> i32 {
    // Methods, parameters and addresses are msgpack strings: UTF-8.
    let mut argv = Vec::new();
    for (i, arg) in std::env::args_os().enumerate() {
        match arg.into_string() {
            Ok(a) => argv.push(a),
            Err(bad) => {
                eprintln!(
                    "zrpc: argument {i} ({}) is not valid UTF-8\nTry 'zrpc --help' for more information.",
                    bad.to_string_lossy()
                );
                return 2;
            }
        }
    }
    // `zerorpc` spells two flags in ways clap cannot: `-pj` and `-?`.
    let argv = argv.into_iter().map(|a| match a.as_str() {
        "-pj" => "--print-json".to_string(),
        "-?" => "--inspect".to_string(),
        _ => a,
    });
    let opts = match Opts::try_parse_from(argv) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_logging(opts.debug);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zrpc: cannot start the runtime: {e}");
            return 1;
        }
    };
    let debug = opts.debug;
    let result = rt.block_on(run(opts));
    // A write to a stdout nobody reads may still block a thread: exit
    // without waiting for it.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => 0,
        Err(CliError::Usage(m)) => {
            eprintln!("zrpc: {m}\nTry 'zrpc --help' for more information.");
            2
        }
        Err(CliError::Failed(e)) => {
            if let (true, Error::Remote(r)) = (debug, &e) {
                if !r.traceback.is_empty() {
                    eprintln!("{}", output::printable(r.traceback.trim_end(), true));
                }
            }
            let e = zerorpc::error::with_causes(&e);
            eprintln!("zrpc: {}", output::printable(&e, false));
            1
        }
        Err(CliError::Other(m)) => {
            eprintln!("zrpc: {}", output::printable(&m, false));
            1
        }
        Err(CliError::Interrupted) => {
            eprintln!("zrpc: interrupted; the call was cancelled");
            130
        }
    }
}

fn init_logging(debug: bool) {
    let default = if debug {
        "zerorpc=debug"
    } else {
        "zerorpc=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for people: a log piped to a file stays plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// How the command fails: a usage error (exit 2), a failure (exit 1) or
/// an interrupt (exit 130), each printed as one line.
enum CliError {
    Usage(String),
    Interrupted,
    Failed(Error),
    /// A failure of the command's own (nothing published, say).
    Other(String),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        match e {
            // What the user typed cannot work (an endpoint that does not
            // parse): a usage error.
            Error::Config(m) => CliError::Usage(m),
            e => CliError::Failed(e),
        }
    }
}

/// Seconds as people write them: `30s`, `0.5s`.
fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    }
}

pub(crate) fn seconds(s: f64, what: &str) -> Result<Option<Duration>, CliError> {
    if !s.is_finite() || s < 0.0 {
        return Err(CliError::Usage(format!(
            "--{what} must be a non-negative number of seconds"
        )));
    }
    if s == 0.0 {
        return Ok(None);
    }
    // (Shorter periods cannot be kept: heartbeats tick at half of it.)
    if what == "heartbeat" && s < 0.001 {
        return Err(CliError::Usage(format!(
            "--heartbeat {s:e} is too short: 0 (off) or at least 0.001 seconds"
        )));
    }
    Duration::try_from_secs_f64(s)
        .map(Some)
        .map_err(|_| CliError::Usage(format!("--{what} {s:e} is too large")))
}

/// Options go before the positionals (as with `zerorpc`): a positional
/// that looks like an option is a misplaced or misspelled one, and taking
/// it as an address, a service or a parameter would hide the mistake
/// (`calc --pool-size 1` served with no pool; `--tiemout 5` became an
/// address). Negative numbers are parameters.
fn check_positionals(rest: &[String]) -> Result<(), CliError> {
    let option = rest.iter().find(|a| {
        let mut chars = a.chars();
        chars.next() == Some('-') && chars.next().is_some_and(|c| c == '-' || c.is_alphabetic())
    });
    match option {
        Some(o) => Err(CliError::Usage(format!(
            "unexpected option {o:?} after the address or method: options go first \
             (to pass a string that starts with '-' as a parameter, use -j and quote it: '\"-x\"')"
        ))),
        None => Ok(()),
    }
}

async fn run(opts: Opts) -> Result<(), CliError> {
    if opts.keygen {
        security::keygen();
        return Ok(());
    }
    check_positionals(&opts.rest)?;
    if opts.broker {
        let heartbeat = seconds(opts.heartbeat, "heartbeat")?;
        return broker::run(&opts, heartbeat).await;
    }
    let mut rest = opts.rest.clone().into_iter();
    let mut connects = opts.connect.clone();
    let binds = opts.bind.clone();
    // Like zerorpc: without --connect/--bind the first positional is the address.
    if connects.is_empty() && binds.is_empty() {
        match rest.next() {
            Some(addr) => connects.push(addr),
            None => {
                return Err(CliError::Usage(
                    "no address given (use ADDRESS, --connect or --bind)".into(),
                ))
            }
        }
    }
    let command = rest.next();
    let params: Vec<String> = rest.collect();
    let heartbeat = seconds(opts.heartbeat, "heartbeat")?;
    let curve = security::curve(&opts)?;
    if opts.conformance {
        let stream = match command {
            Some(method) => Some((method, parse_params(&params, opts.json)?)),
            None => None,
        };
        return conformance::run(conformance::Request {
            connects,
            binds,
            period: heartbeat.unwrap_or(zerorpc::server::DEFAULT_HEARTBEAT),
            timeout: seconds(opts.timeout, "timeout")?.unwrap_or(Duration::from_secs(3600)),
            sleep_method: opts.sleep_method.clone(),
            items_method: opts.items_method.clone(),
            stream,
            json: opts.print_json,
        })
        .await;
    }
    if opts.server {
        security::check_exec_exposure(&opts, &binds, &connects, curve.is_some())?;
        serve(&opts, connects, binds, command, params, heartbeat, curve).await
    } else if opts.push || opts.publish {
        let timeout = seconds(opts.timeout, "timeout")?.unwrap_or(Duration::MAX);
        let method =
            command.ok_or_else(|| CliError::Usage("--push and --pub need a METHOD".into()))?;
        let args = parse_params(&params, opts.json)?;
        oneway::send(opts.push, &connects, &binds, &method, args, timeout, curve).await
    } else if opts.notify {
        let timeout = seconds(opts.timeout, "timeout")?.unwrap_or(Duration::MAX);
        let event_type = command
            .ok_or_else(|| CliError::Usage("--notify needs an EVENT_TYPE and a PAYLOAD".into()))?;
        let mut payload = parse_params(&params, opts.json)?;
        if payload.len() != 1 {
            return Err(CliError::Usage(format!(
                "--notify takes one PAYLOAD after the event type (got {})",
                payload.len()
            )));
        }
        let priority = match opts.priority[..] {
            [] => zerorpc::oneway::Priority::Info,
            [p] => p,
            _ => return Err(CliError::Usage("--notify takes one --priority".into())),
        };
        let mut ctxt = Vec::new();
        for h in &opts.header {
            let (key, value) = h
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--header takes KEY=VALUE, got {h:?}")))?;
            let value = parse_params(&[value.to_string()], opts.json)?.remove(0);
            ctxt.push((Value::from(key), value));
        }
        let note = oneway::Note {
            publisher_id: opts.publisher_id.clone().unwrap_or_else(|| "zrpc".into()),
            priority,
            event_type,
            payload: payload.remove(0),
            ctxt: Value::Map(ctxt),
        };
        oneway::notify(&connects, &binds, note, timeout, curve).await
    } else if opts.listen {
        if let Some(extra) = command {
            return Err(CliError::Usage(format!(
                "--listen takes no event type or payload (got {extra:?}): filter with --event-type"
            )));
        }
        let wanted = oneway::Wanted {
            priorities: opts.priority.clone(),
            event_types: opts.event_type.clone(),
            publisher_id: opts.publisher_id.clone(),
        };
        oneway::listen_notifications(&connects, &binds, wanted, curve).await
    } else if opts.pull || opts.subscribe {
        if let Some(extra) = command {
            return Err(CliError::Usage(format!(
                "--pull and --sub take no method or service (got {extra:?}): they print every event"
            )));
        }
        oneway::listen(opts.pull, &connects, &binds, opts.max_message_size, curve).await
    } else {
        let timeout = seconds(opts.timeout, "timeout")?;
        let mut builder = Client::builder()
            .timeout(timeout)
            .heartbeat(heartbeat)
            .passive_heartbeat(!opts.active_hb);
        if let Some(n) = opts.max_message_size {
            builder = builder.max_message_size(n);
        }
        if let Some(c) = curve {
            builder = builder.curve(c);
        }
        if let Some(v) = opts.api_version {
            builder = builder.api_version(v);
        }
        for h in &opts.header {
            let (key, value) = h
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--header takes KEY=VALUE, got {h:?}")))?;
            let value = parse_params(&[value.to_string()], opts.json)?.remove(0);
            builder = builder.header(key, value);
        }
        for ep in &connects {
            tracing::debug!("connecting to \"{ep}\"");
            builder = builder.connect(ep);
        }
        for ep in &binds {
            tracing::debug!("binding to \"{ep}\"");
            builder = builder.bind(ep);
        }
        let client = builder.start().await?;
        // Ctrl-C abandons the call: the server is told (`_zpc_cancel`) and
        // stops working on it, instead of finishing for nobody.
        let result = tokio::select! {
            r = client_main(&opts, &client, command, params) => r,
            _ = tokio::signal::ctrl_c() => Err(CliError::Interrupted),
        };
        let _ = client.close(Duration::from_millis(200)).await;
        result
    }
}

async fn serve(
    opts: &Opts,
    connects: Vec<String>,
    binds: Vec<String>,
    command: Option<String>,
    more: Vec<String>,
    heartbeat: Option<Duration>,
    curve: Option<zerorpc::security::Curve>,
) -> Result<(), CliError> {
    let builtin = |name: &str| {
        builtins::service(name).ok_or_else(|| {
            CliError::Usage(format!(
                "unknown service {name:?}: built-in services are {} (or serve commands with --exec NAME=COMMAND)",
                builtins::NAMES.join(", ")
            ))
        })
    };
    let mut service = match command.as_deref() {
        Some(name) => builtin(name)?,
        None if !opts.exec.is_empty() => zerorpc::Service::new("exec"),
        None => {
            return Err(CliError::Usage(format!(
                "--server needs a service ({}) or --exec NAME=COMMAND",
                builtins::NAMES.join(", ")
            )))
        }
    };
    let runner = exec::Runner::new(opts.exec_max, opts.exec_allow_options);
    for spec in &opts.exec {
        service = exec::add_exec(service, spec, &runner).map_err(CliError::Usage)?;
    }
    if let Some(v) = opts.api_version {
        service = service.version(v);
    }
    for name in &more {
        if Some(name) == command.as_ref() || more.iter().filter(|m| *m == name).count() > 1 {
            return Err(CliError::Usage(format!("service {name:?} is named twice")));
        }
        service = service.mount(builtin(name)?);
    }
    let name = service.name().to_string();
    if let Some(addr) = &opts.metrics {
        serve_metrics(addr)?;
    }
    let mut builder = Server::builder(service).heartbeat(heartbeat);
    if let Some(n) = &opts.server_name {
        builder = builder.name(n);
    }
    if let Some(c) = curve {
        builder = builder.curve(c);
    }
    if let Some(n) = opts.pool_size {
        builder = builder.pool_size(n);
    }
    if let Some(n) = opts.pool_per_client {
        builder = builder.pool_per_client(n);
    }
    if let Some(n) = opts.pool_queue {
        builder = builder.pool_queue(n, zerorpc::server::DEFAULT_POOL_QUEUE_BYTES);
    }
    if let Some(n) = opts.send_queue_bytes {
        builder = builder.send_queue_bytes(n);
    }
    if let Some(s) = opts.handshake_timeout {
        builder = builder.handshake_timeout(seconds(s, "handshake-timeout")?);
    }
    if let Some(n) = opts.max_message_size {
        builder = builder.max_message_size(n);
    }
    if let Some(n) = opts.send_queue {
        builder = builder.send_queue(n);
    }
    for ep in &binds {
        tracing::debug!("binding to \"{ep}\"");
        builder = builder.bind(ep);
    }
    for ep in &connects {
        tracing::debug!("connecting to \"{ep}\"");
        builder = builder.connect(ep);
    }
    let server = builder.start().await?;
    eprintln!(
        "serving \"{name}\" on {} as server {:?}",
        server.endpoints().join(", "),
        server.name()
    );
    wait_for_signal().await;
    eprintln!("stopping: finishing requests in flight (up to 10s)");
    if let Err(e) = server.close(Duration::from_secs(10)).await {
        // Stopping is what was asked for: say what was cut short, exit 0.
        eprintln!("zrpc: {e}");
    }
    Ok(())
}

/// Install the Prometheus recorder, serving `GET /metrics` on `addr`
/// (before the server starts: its metrics register then).
pub(crate) fn serve_metrics(addr: &str) -> Result<(), CliError> {
    let socket: std::net::SocketAddr = addr.parse().map_err(|_| {
        CliError::Usage(format!(
            "--metrics takes HOST:PORT (an IP address), got {addr:?}"
        ))
    })?;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Durations as Prometheus histograms (buckets add up across servers;
    // quantile summaries do not), from 100 µs to 30 s.
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(socket)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(|e| CliError::Other(format!("cannot serve metrics: {e}")))?
        .install()
        .map_err(|e| CliError::Other(format!("cannot serve metrics on {addr}: {e}")))?;
    eprintln!("metrics at http://{socket}/metrics");
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn client_main(
    opts: &Opts,
    client: &Client,
    command: Option<String>,
    params: Vec<String>,
) -> Result<(), CliError> {
    let Some(method) = command else {
        let svc = output::describe(client).await?;
        output::emit(&output::listing(&svc, opts.inspect));
        return Ok(());
    };
    if opts.inspect {
        let svc = output::describe(client).await?;
        output::emit(&output::method_help(&svc, &method));
        return Ok(());
    }
    let mut args = parse_params(&params, opts.json)?;
    if !opts.kw.is_empty() {
        let mut kwargs = Vec::new();
        for kw in &opts.kw {
            let (name, value) = kw
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--kw takes NAME=VALUE, got {kw:?}")))?;
            let value = parse_params(&[value.to_string()], opts.json)?.remove(0);
            kwargs.push((name.to_string(), value));
        }
        args = client.positional(&method, args, kwargs).await?;
    }
    let mut call = CallOptions::default();
    if let Some(to) = &opts.to {
        call = call.to(to);
    }
    let response = match opts.stdin {
        true => {
            let items = json::lines(std::io::stdin());
            client
                .request_dynamic_with_items(&method, args, items, call)
                .await?
        }
        false => client.request_dynamic(&method, args, call).await?,
    };
    match response {
        Response::Value(v) => output::emit(&format!("{}\n", output::render(&v, opts.print_json))),
        Response::Stream(items) => output::print_stream(items, opts.print_json).await?,
    }
    Ok(())
}

/// Method parameters: strict JSON with `-j`, otherwise inferred.
fn parse_params(params: &[String], json: bool) -> Result<Vec<Value>, CliError> {
    params
        .iter()
        .map(|p| {
            if json {
                json::parse_json(p)
                    .map_err(|e| CliError::Usage(format!("parameter {p:?} is not valid JSON: {e}")))
            } else {
                Ok(infer_cli_arg(p))
            }
        })
        .collect()
}
