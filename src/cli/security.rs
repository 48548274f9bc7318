//! The command line's CURVE options: `--keygen`, the keys, and the rule
//! that commands are not served in clear beyond loopback.

use super::flags::Opts;
use super::CliError;
use crate::security::{parse_key, z85, Curve, CurveKeyPair, Key};

/// `zrpc --keygen`: the public key, then the secret key, one per line
/// (what `zmq_curve_keypair` makes; nothing else on stdout).
pub(super) fn keygen() {
    let keys = CurveKeyPair::generate();
    let public = z85::encode(&keys.public()).unwrap_or_default();
    let secret = z85::encode(&keys.secret()).unwrap_or_default();
    super::output::emit(&format!("{public}\n{secret}\n"));
}

/// A key given on the command line: the key itself, or `@FILE`. A file
/// may hold a `--keygen` output: a public key is its first line, a secret
/// key its last.
fn read_key(arg: &str, flag: &str, secret: bool) -> Result<Key, CliError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            let content = std::fs::read_to_string(path)
                .map_err(|e| CliError::Other(format!("cannot read {flag} file {path}: {e}")))?;
            let mut lines = content.lines().map(str::trim).filter(|l| !l.is_empty());
            let line = if secret {
                lines.next_back()
            } else {
                lines.next()
            };
            line.unwrap_or_default().to_string()
        }
        None => arg.to_string(),
    };
    parse_key(&text).map_err(|e| CliError::Usage(format!("{flag}: {e}")))
}

/// The CURVE role the options ask for, if any: a client with
/// `--curve-server`, else a server with `--curve-secret`.
pub(super) fn curve(opts: &Opts) -> Result<Option<Curve>, CliError> {
    let secret = opts
        .curve_secret
        .as_deref()
        .map(|s| read_key(s, "--curve-secret", true))
        .transpose()?;
    let keys = secret.map(CurveKeyPair::from_secret);
    if let Some(server) = &opts.curve_server {
        let server = read_key(server, "--curve-server", false)?;
        if !opts.curve_allow.is_empty() || opts.curve_allow_any {
            return Err(CliError::Usage(
                "--curve-allow is for the CURVE server side; --curve-server makes this side a client"
                    .into(),
            ));
        }
        let keys = keys.unwrap_or_else(CurveKeyPair::generate);
        return Ok(Some(Curve::client(keys, server)));
    }
    let Some(keys) = keys else {
        if !opts.curve_allow.is_empty() || opts.curve_allow_any {
            return Err(CliError::Usage(
                "--curve-allow needs --curve-secret (this side's secret key)".into(),
            ));
        }
        return Ok(None);
    };
    let mut curve = Curve::server(keys);
    if opts.curve_allow_any {
        curve = curve.allow_any();
    }
    for allow in &opts.curve_allow {
        curve = curve.allow(read_key(allow, "--curve-allow", false)?);
    }
    if opts.curve_allow.is_empty() && !opts.curve_allow_any {
        return Err(CliError::Usage(
            "a CURVE server lets in no client: add --curve-allow KEY (or --curve-allow-any)".into(),
        ));
    }
    Ok(Some(curve))
}

/// `--exec` runs commands for whoever can connect: in clear text, only on
/// loopback (or with `--insecure`).
pub(super) fn check_exec_exposure(
    opts: &Opts,
    binds: &[String],
    connects: &[String],
    secured: bool,
) -> Result<(), CliError> {
    if opts.exec.is_empty() || secured || opts.insecure {
        return Ok(());
    }
    let exposed: Vec<&String> = binds
        .iter()
        .chain(connects)
        .filter(|ep| !loopback(ep))
        .collect();
    match exposed.first() {
        None => Ok(()),
        Some(ep) => Err(CliError::Usage(format!(
            "--exec on {ep} would run commands for anyone who can reach it, in clear text: \
             secure it with --curve-secret and --curve-allow, bind to 127.0.0.1, or pass --insecure"
        ))),
    }
}

/// Is this endpoint reachable from this host only?
fn loopback(endpoint: &str) -> bool {
    if endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://") {
        return true;
    }
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    let host = match rest.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => rest,
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn loopback_endpoints() {
        for ep in [
            "tcp://127.0.0.1:4242",
            "tcp://127.1.2.3:1",
            "tcp://[::1]:4242",
            "tcp://localhost:1",
            "ipc:///tmp/x",
        ] {
            assert!(loopback(ep), "{ep}");
        }
        for ep in [
            "tcp://*:4242",
            "tcp://0.0.0.0:1",
            "tcp://10.0.0.1:1",
            "tcp://[::]:1",
        ] {
            assert!(!loopback(ep), "{ep}");
        }
    }
}
