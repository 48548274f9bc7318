//! Shell commands served as methods: `zrpc --server --exec NAME=COMMAND`.

use super::json::to_json;
use crate::{Service, ServiceError, Value};

/// Add `NAME=COMMAND` as a method of `service`: the call's arguments become
/// the command's argv (`$1`, `$2`, …, never interpreted by the shell), its
/// stdout is the result, and a non-zero exit is an `ERR` carrying stderr.
pub(super) fn add_exec(service: Service, spec: &str) -> Result<Service, String> {
    let (name, command) = spec
        .split_once('=')
        .filter(|(n, c)| !n.is_empty() && !c.trim().is_empty())
        .ok_or_else(|| format!("--exec expects NAME=COMMAND, got {spec:?}"))?;
    let (name, command) = (name.to_string(), command.to_string());
    let doc = format!("Run `{command}` with the arguments as argv; returns its stdout.");
    let method = name.clone();
    Ok(service
        .dynamic(&name, move |args| {
            let command = command.clone();
            let method = method.clone();
            async move { run_exec(&method, &command, args).await }
        })
        .doc(doc)
        .args(["*args"]))
}

async fn run_exec(name: &str, command: &str, args: Vec<Value>) -> Result<Value, ServiceError> {
    let argv: Vec<String> = args
        .iter()
        .map(|v| match v {
            Value::String(s) => s.as_str().unwrap_or("").to_string(),
            Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            other => to_json(other).to_string(),
        })
        .collect();
    // `sh -c 'COMMAND "$@"' NAME ARGS…`: arguments are positional
    // parameters, so nothing a caller sends is parsed by the shell.
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg(name)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ServiceError::new("ExecError", format!("cannot run {command:?}: {e}")))?;
    if output.status.success() {
        let mut out = String::from_utf8_lossy(&output.stdout).into_owned();
        if out.ends_with('\n') {
            out.pop();
        }
        Ok(Value::from(out))
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_string();
        let status = output
            .status
            .code()
            .map_or("a signal".to_string(), |c| format!("status {c}"));
        let first = stderr.lines().last().unwrap_or("").to_string();
        let message = if first.is_empty() {
            format!("{name} exited with {status}")
        } else {
            format!("{name} exited with {status}: {first}")
        };
        Err(ServiceError::new("ExecError", message).with_traceback(stderr))
    }
}
