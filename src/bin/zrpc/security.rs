//! The command line's CURVE options: `--keygen`, the keys, and the rule
//! that commands are not served in clear beyond loopback.

use crate::flags::Opts;
use crate::CliError;
use zerorpc::security::{parse_key, z85, Curve, CurveKeyPair, Key};

/// `zrpc --keygen`: the public key, then the secret key, one per line
/// (what `zmq_curve_keypair` makes; nothing else on stdout).
pub(super) fn keygen() {
    let keys = CurveKeyPair::generate();
    let public = z85::encode(&keys.public()).unwrap_or_default();
    let secret = z85::encode(&keys.secret()).unwrap_or_default();
    crate::output::emit(&format!("{public}\n{secret}\n"));
}

/// The largest key file read: a `--keygen` output is 82 bytes.
const MAX_KEY_FILE: u64 = 4096;

/// A key given on the command line: the key itself, or `@FILE`. A key
/// always wins (`@` is one of Z85's characters); anything else starting
/// with `@` names a file, which may hold a `--keygen` output: a public key
/// is its first line, a secret key its last.
pub(super) fn read_key(arg: &str, flag: &str, secret: bool) -> Result<Key, CliError> {
    if let Ok(key) = parse_key(arg) {
        return Ok(key);
    }
    let Some(path) = arg.strip_prefix('@') else {
        return parse_key(arg).map_err(|e| CliError::Usage(format!("{flag}: {e}")));
    };
    let content = read_key_file(path)
        .map_err(|e| CliError::Other(format!("cannot read {flag} file {path}: {e}")))?;
    let mut lines = content.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = if secret {
        lines.next_back()
    } else {
        lines.next()
    };
    parse_key(line.unwrap_or_default())
        .map_err(|e| CliError::Usage(format!("{flag} file {path}: {e}")))
}

/// A key file's text, read no further than [`MAX_KEY_FILE`] bytes (a
/// device such as /dev/zero never ends).
fn read_key_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(format!("longer than {MAX_KEY_FILE} bytes: not a key file"));
    }
    String::from_utf8(bytes).map_err(|_| "not text: not a key file".to_string())
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
