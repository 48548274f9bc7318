//! Shell commands served as methods: `zrpc --server --exec NAME=COMMAND`.
//!
//! What a caller controls: the arguments, and nothing else. They become the
//! command's argv (`sh -c 'COMMAND "$@"' NAME ARGS…`), so the shell never
//! parses them; an argument that starts with `-` is refused unless the
//! server allows options (it would be an option of the command: `find DIR
//! -name` called with `-exec touch F ;` runs `touch`). Each command runs
//! in its own process group, which is killed whole when the call is
//! cancelled (the caller gave up, or its connection closed); at most
//! `--exec-max` run at once; output beyond [`MAX_OUTPUT`] is an error.

use crate::json::to_json;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use zerorpc::{Service, ServiceError, Value};

/// The most stdout a command may produce (the reply carries it whole).
pub(super) const MAX_OUTPUT: usize = 16 << 20;
/// The most stderr kept for the error's traceback.
const MAX_STDERR: usize = 64 << 10;

/// What every `--exec` method shares: the cap on commands running at once,
/// and whether callers may pass options.
#[derive(Clone)]
pub(super) struct Runner {
    slots: Arc<Semaphore>,
    max: usize,
    allow_options: bool,
}

impl Runner {
    pub(super) fn new(max: usize, allow_options: bool) -> Self {
        let max = max.max(1);
        Runner {
            slots: Arc::new(Semaphore::new(max)),
            max,
            allow_options,
        }
    }
}

/// Add `NAME=COMMAND` as a method of `service`: the call's arguments become
/// the command's argv, its stdout is the result, and a non-zero exit is an
/// `ERR ExecError` carrying stderr.
pub(super) fn add_exec(service: Service, spec: &str, runner: &Runner) -> Result<Service, String> {
    let (name, command) = spec
        .split_once('=')
        .filter(|(n, c)| !n.is_empty() && !c.trim().is_empty())
        .ok_or_else(|| format!("--exec expects NAME=COMMAND, got {spec:?}"))?;
    let (name, command) = (name.to_string(), command.to_string());
    let doc = format!(
        "Run `{command}` with the arguments as argv (none may start with '-'); returns its stdout."
    );
    let method = name.clone();
    let runner = runner.clone();
    Ok(service
        .dynamic(&name, move |args| {
            let (command, method, runner) = (command.clone(), method.clone(), runner.clone());
            async move { run_exec(&runner, &method, &command, args).await }
        })
        .doc(doc)
        .args(["*args"]))
}

async fn run_exec(
    runner: &Runner,
    name: &str,
    command: &str,
    args: Vec<Value>,
) -> Result<Value, ServiceError> {
    let argv: Vec<String> = args
        .iter()
        .map(|v| match v {
            Value::String(s) => s.as_str().unwrap_or("").to_string(),
            Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            other => to_json(other).to_string(),
        })
        .collect();
    if !runner.allow_options {
        if let Some((i, a)) = argv.iter().enumerate().find(|(_, a)| a.starts_with('-')) {
            let shown = zerorpc::error::clip(a, 40);
            return Err(ServiceError::new(
                "ValueError",
                format!(
                    "argument {} ({shown:?}) starts with '-': {name} takes no options from callers",
                    i + 1
                ),
            ));
        }
    }
    let Ok(_slot) = runner.slots.try_acquire() else {
        return Err(ServiceError::new(
            "ServerBusy",
            format!(
                "{} commands are already running; try again later",
                runner.max
            ),
        ));
    };
    // `sh -c 'COMMAND "$@"' NAME ARGS…`: arguments are positional
    // parameters, so nothing a caller sends is parsed by the shell.
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg(name)
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ServiceError::new("ExecError", format!("cannot run {command:?}: {e}")))?;
    // Until the command is reaped, dropping this (the call was cancelled)
    // kills its whole process group, grandchildren included.
    let group = child.id().map(Group);
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let output = async {
        let out = read_capped(stdout.as_mut(), MAX_OUTPUT).await;
        if out.is_none() {
            // Too much: stop the command, or it blocks on a full pipe.
            group.as_ref().map(Group::kill);
        }
        out
    };
    let (out, err, status) = tokio::join!(
        output,
        read_capped(stderr.as_mut(), MAX_STDERR),
        child.wait()
    );
    let status = status.map_err(|e| ServiceError::new("ExecError", e.to_string()))?;
    if let Some(group) = group {
        group.disarm();
    }
    let Some(out) = out else {
        return Err(ServiceError::new(
            "ExecError",
            format!("{name} wrote more than {MAX_OUTPUT} bytes"),
        ));
    };
    let stderr = String::from_utf8_lossy(&err.unwrap_or_default())
        .trim_end()
        .to_string();
    if status.success() {
        let mut out = String::from_utf8_lossy(&out).into_owned();
        if out.ends_with('\n') {
            out.pop();
        }
        return Ok(Value::from(out));
    }
    let status = status
        .code()
        .map_or("a signal".to_string(), |c| format!("status {c}"));
    let last = stderr.lines().last().unwrap_or("").to_string();
    let message = if last.is_empty() {
        format!("{name} exited with {status}")
    } else {
        format!("{name} exited with {status}: {last}")
    };
    Err(ServiceError::new("ExecError", message).with_traceback(stderr))
}

/// All of a pipe, or `None` past `cap` bytes (then it stops reading: the
/// command blocks, and is killed with its group when the call ends).
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(
    pipe: Option<&mut R>,
    cap: usize,
) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let pipe = pipe?;
    let read = pipe.take(cap as u64 + 1).read_to_end(&mut buf).await;
    (read.is_ok() && buf.len() <= cap).then_some(buf)
}

/// A command's process group (the shell's pid), killed when dropped
/// unless disarmed.
struct Group(u32);

impl Group {
    fn kill(&self) {
        let pid = i32::try_from(self.0)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}
