//! The command line's flags, as in `zerorpc` 0.6.3 plus zrpc's own.

use clap::Parser;

/// Command-line flags, as in `zerorpc` 0.6.3.
#[derive(Parser, Debug)]
#[command(
    name = "zrpc",
    version,
    about = "Call or serve zerorpc services (a drop-in for the zerorpc command).",
    after_help = "Examples:\n  \
        zrpc --server --bind tcp://127.0.0.1:4242 calc\n  \
        zrpc tcp://127.0.0.1:4242 add 2 3\n  \
        zrpc --client --connect tcp://127.0.0.1:4242 strftime %Y/%m/%d\n  \
        zrpc -? tcp://127.0.0.1:4242\n  \
        zrpc --server --bind tcp://127.0.0.1:4243 --exec uptime=uptime\n  \
        zrpc --server --bind tcp://127.0.0.1:4246 calc time echo   (time.strftime, echo.count, ...)\n  \
        zrpc tcp://127.0.0.1:4242 count 5              (echo service: a stream)\n  \
        zrpc --pull --bind tcp://127.0.0.1:4244        (print every pushed event)\n  \
        zrpc --push --connect tcp://127.0.0.1:4244 resize photo.jpg 640\n  \
        zrpc --sub --connect tcp://127.0.0.1:4245      (print every published event)\n  \
        zrpc --pub --bind tcp://127.0.0.1:4245 news hello\n  \
        zrpc --listen --connect tcp://127.0.0.1:4247 --event-type 'compute.*'\n  \
        zrpc --notify --bind tcp://127.0.0.1:4247 --priority error compute.fail 'disk full'\n\n\
        Built-in services: time, calc, echo. --exec runs commands for remote callers:\n\
        only expose it on endpoints you trust."
)]
#[command(group(clap::ArgGroup::new("role").args(["client", "server", "push", "pull", "publish", "subscribe", "notify", "listen", "conformance"])))]
pub(super) struct Opts {
    /// Run as a client (the default).
    #[arg(long)]
    pub(super) client: bool,
    /// Run as a server, serving SERVICE (time, calc, echo) and any --exec
    /// methods; more SERVICEs after the first are served beside it under
    /// their names (`time.strftime`).
    #[arg(long)]
    pub(super) server: bool,
    /// Send one event METHOD PARAMS... to one puller (PUSH), then exit.
    #[arg(long)]
    pub(super) push: bool,
    /// Print every pushed event as a JSON line until interrupted (PULL).
    #[arg(long)]
    pub(super) pull: bool,
    /// Send one event METHOD PARAMS... to every subscriber (PUB), then exit.
    /// Waits (up to --timeout) for a subscriber first.
    #[arg(long = "pub")]
    pub(super) publish: bool,
    /// Print every published event as a JSON line until interrupted (SUB).
    #[arg(long = "sub")]
    pub(super) subscribe: bool,
    /// Send one notification EVENT_TYPE PAYLOAD at --priority (default
    /// info) to every listener, then exit; the request context is the
    /// --header keys. Waits (up to --timeout) for a listener first.
    #[arg(long)]
    pub(super) notify: bool,
    /// Print every notification as a JSON line until interrupted (priority,
    /// event_type, publisher_id, payload, ctxt), filtered by --priority,
    /// --event-type and --publisher-id at the notifier.
    #[arg(long)]
    pub(super) listen: bool,
    /// With --notify: its priority (audit, debug, info, warn, error,
    /// critical, sample). With --listen: one it wants (repeatable).
    #[arg(long, value_name = "PRIORITY")]
    pub(super) priority: Vec<zerorpc::oneway::Priority>,
    /// With --listen: event types it wants, `*` for any text (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub(super) event_type: Vec<String>,
    /// With --notify: who it says it is (default zrpc). With --listen: the
    /// publishers it wants, `*` for any text.
    #[arg(long, value_name = "ID")]
    pub(super) publisher_id: Option<String>,
    /// Check another zerorpc implementation against the protocol: probe the
    /// server at ADDRESS (optionally with a STREAM_METHOD and its PARAMS),
    /// or with --bind, check every client that calls. One line per check;
    /// exit 0 only when none failed.
    #[arg(long)]
    pub(super) conformance: bool,
    /// With --conformance: the server's method that sleeps for its one
    /// argument in seconds (for the long-call heartbeat checks).
    #[arg(long, default_value = "sleep", value_name = "NAME")]
    pub(super) sleep_method: String,
    /// With --conformance: the server's method that takes a stream of
    /// items and no parameters (zrpc's extension; its `ext.*` checks are
    /// not run against a server without it).
    #[arg(long, default_value = "sum", value_name = "NAME")]
    pub(super) items_method: String,
    /// Connect to ADDRESS (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub(super) connect: Vec<String>,
    /// Bind to ADDRESS (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub(super) bind: Vec<String>,
    /// Call timeout in seconds (client).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub(super) timeout: f64,
    /// Heartbeat period in seconds; 0 disables heartbeats.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub(super) heartbeat: f64,
    /// Maximum number of requests handled at once (server).
    #[arg(long, value_name = "COUNT", value_parser = count)]
    pub(super) pool_size: Option<usize>,
    /// Largest message accepted from a peer, in bytes (default 100 MiB); a
    /// peer that sends more is disconnected.
    #[arg(long, value_name = "BYTES", value_parser = message_size)]
    pub(super) max_message_size: Option<usize>,
    /// Replies that may wait for one client before further replies to it
    /// are dropped (server; default 10000).
    #[arg(long, value_name = "COUNT", value_parser = count)]
    pub(super) send_queue: Option<usize>,
    /// The same bound in bytes (server; default 64 MiB; one reply is always
    /// taken, whatever its size).
    #[arg(long, value_name = "BYTES", value_parser = count)]
    pub(super) send_queue_bytes: Option<usize>,
    /// With --pool-size: the most requests one client runs at once
    /// (default pool size - 1, so one slot is left for others).
    #[arg(long, value_name = "COUNT", value_parser = count)]
    pub(super) pool_per_client: Option<usize>,
    /// With --pool-size: requests that may wait for a slot, all clients
    /// together (default 1024); with --broker: calls that may wait for a
    /// worker (default 1000). Beyond, ERR ServerBusy.
    #[arg(long, value_name = "COUNT", value_parser = count)]
    pub(super) pool_queue: Option<usize>,
    /// Seconds a new connection has to complete the ZeroMQ handshake
    /// (server; default 30; 0 waits forever).
    #[arg(long, value_name = "SECONDS")]
    pub(super) handshake_timeout: Option<f64>,
    /// Most --exec commands running at once (default 16); beyond, calls get
    /// ERR ServerBusy.
    #[arg(long, default_value_t = 16, value_name = "COUNT", value_parser = count)]
    pub(super) exec_max: usize,
    /// Let callers pass --exec arguments that start with '-' (refused by
    /// default: they would be options of the command).
    #[arg(long)]
    pub(super) exec_allow_options: bool,
    /// Parse every parameter as JSON (otherwise numbers, true, false and null
    /// are recognised and everything else is a string).
    #[arg(short = 'j', long)]
    pub(super) json: bool,
    /// Print results as JSON (also `-pj`).
    #[arg(long)]
    pub(super) print_json: bool,
    /// Show method signatures and documentation (also `-?`).
    #[arg(long)]
    pub(super) inspect: bool,
    /// Heartbeat actively from the start instead of answering the server's.
    #[arg(long)]
    pub(super) active_hb: bool,
    /// Debug logging, and remote tracebacks on errors.
    #[arg(short = 'd', long)]
    pub(super) debug: bool,
    /// Print a new CURVE key pair (public key, then secret key; Z85, one per
    /// line) and exit.
    #[arg(long)]
    pub(super) keygen: bool,
    /// This side's CURVE secret key (Z85, or @FILE holding it; a --keygen
    /// output file works). With --curve-server this side is a CURVE client,
    /// otherwise the CURVE server (and needs --curve-allow or
    /// --curve-allow-any).
    #[arg(long, value_name = "KEY|@FILE")]
    pub(super) curve_secret: Option<String>,
    /// The CURVE server's public key (this side is a CURVE client; its own
    /// key is --curve-secret, or a new one).
    #[arg(long, value_name = "KEY|@FILE")]
    pub(super) curve_server: Option<String>,
    /// A CURVE client public key the server lets in (repeatable).
    #[arg(long, value_name = "KEY|@FILE")]
    pub(super) curve_allow: Vec<String>,
    /// Let in any CURVE client that completes the handshake.
    #[arg(long)]
    pub(super) curve_allow_any: bool,
    /// Run a broker (zrpc's call-aware proxy): clients connect to
    /// --frontend, workers (servers that --connect) to --backend; every
    /// event of a call stays on the worker that took it.
    #[arg(long)]
    pub(super) broker: bool,
    /// With --broker: bind ADDRESS for clients (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub(super) frontend: Vec<String>,
    /// With --broker: bind ADDRESS for workers (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    pub(super) backend: Vec<String>,
    /// With --broker and --curve-secret: a worker public key the backend
    /// lets in (repeatable); without it the backend is not encrypted.
    #[arg(long, value_name = "KEY|@FILE")]
    pub(super) backend_curve_allow: Vec<String>,
    /// With --broker: let in any worker that completes the CURVE handshake.
    #[arg(long)]
    pub(super) backend_curve_allow_any: bool,
    /// Serve --exec methods on a non-loopback address without CURVE anyway.
    #[arg(long)]
    pub(super) insecure: bool,
    /// Serve Prometheus metrics at http://ADDRESS/metrics (server; e.g.
    /// 127.0.0.1:9100).
    #[arg(long, value_name = "ADDRESS")]
    pub(super) metrics: Option<String>,
    /// Send KEY: VALUE in the request header (client; repeatable). VALUE is
    /// read like a parameter (a number, true, false, null, else a string;
    /// strict JSON with -j).
    #[arg(long, value_name = "KEY=VALUE")]
    pub(super) header: Vec<String>,
    /// This server's name (server; default: host-pid): clients send calls
    /// to it by name with --to.
    #[arg(long, value_name = "NAME")]
    pub(super) server_name: Option<String>,
    /// Send the call to the server named NAME among those given (client;
    /// see --server-name); fails at once if none has it.
    #[arg(long, value_name = "NAME")]
    pub(super) to: Option<String>,
    /// The API version X.Y: the version the default service serves
    /// (server), or that every call requires (client; a server that does
    /// not serve it answers UnsupportedVersion).
    #[arg(long, value_name = "X.Y")]
    pub(super) api_version: Option<zerorpc::Version>,
    /// Pass argument NAME by name (client; repeatable), after the
    /// positional PARAMS: placed at its position by the server's own
    /// introspection, skipped parameters getting their defaults. VALUE is
    /// read like a parameter.
    #[arg(long, value_name = "NAME=VALUE")]
    pub(super) kw: Vec<String>,
    /// Make the call a client stream (client; zrpc's extension): its items
    /// are read from standard input, one JSON value per line, after any
    /// PARAMS, and sent as the server asks for them; results print as they
    /// arrive. Without it, `-` is an ordinary parameter.
    #[arg(long)]
    pub(super) stdin: bool,
    /// Serve a shell command as method NAME (server; repeatable). Arguments
    /// become argv, stdout is the result, a non-zero exit is an error.
    #[arg(long, value_name = "NAME=COMMAND")]
    pub(super) exec: Vec<String>,
    /// [ADDRESS] [METHOD|SERVICE] [PARAMS...]  (ADDRESS is omitted when --connect or --bind is given)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub(super) rest: Vec<String>,
}

/// A count or size of at least 1 (0 could never work).
fn count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A message size: at least 1 KiB, so that handshakes fit.
fn message_size(s: &str) -> Result<usize, String> {
    match count(s)? {
        n if n < 1024 => Err("must be at least 1024 bytes".into()),
        n => Ok(n),
    }
}
