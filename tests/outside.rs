//! The crate as others get it: a project outside this workspace that
//! depends on `zerorpc` by path, with no `[patch]` anywhere, runs the
//! README's quick start; a plain dependent compiles no command-line
//! dependency; and the workspace packages for publishing.
//!
//! These run cargo itself, each in its own target directory under
//! `target/` (so they never wait on the build lock of the `cargo test` that
//! runs them), one at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Two cargo builds at once on a 2-core machine help nobody.
static CARGO: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // These builds only have to compile and run: debug info would make
    // them the slowest part of the suite.
    cargo.env("CARGO_PROFILE_DEV_DEBUG", "false");
    cargo
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run cargo: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The first ```rust block after the README's "Library quick start"
/// heading.
fn readme_quick_start() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read README.md");
    let section = readme
        .split("## Library quick start")
        .nth(1)
        .expect("the README has a Library quick start section");
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the quick start has a ```rust block");
    block.to_string()
}

/// A crate in `dir` that depends on this one by path and on nothing of
/// this workspace's configuration.
fn write_outside_crate(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        r#"[package]
name = "outside"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
zerorpc = {{ path = {root:?} }}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread", "sync", "time"] }}
serde = {{ version = "1", features = ["derive"] }}
futures = "0.3"

# Its own workspace: nothing is inherited from the one above.
[workspace]
"#,
        root = root().display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), readme_quick_start()).unwrap();
    // The workspace's lock pins the versions it is tested with; cargo
    // drops what the outside crate does not use and adds the rest.
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

#[test]
fn a_crate_outside_the_workspace_runs_the_readme_quick_start() {
    let _one = CARGO.lock().unwrap_or_else(|e| e.into_inner());
    let dir = root().join("target/outside/crate");
    let _ = std::fs::remove_dir_all(&dir);
    write_outside_crate(&dir);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(!manifest.contains("[patch"), "{manifest}");

    let target = root().join("target/outside/target");
    let started = Instant::now();
    let out = run(
        cargo()
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .args(["run", "--quiet"]),
        "building and running the outside crate",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("quick start: add(2, 3) = 5, count(3) = [0, 1, 2], one event handled"),
        "{stdout}"
    );
    eprintln!(
        "outside crate built and ran in {:.0?}",
        started.elapsed().max(Duration::from_millis(1))
    );

    // A plain library dependent compiles none of the CLI's dependencies.
    let tree = run(
        cargo()
            .current_dir(&dir)
            .args(["tree", "-e", "normal", "--prefix", "none", "-p", "zerorpc"]),
        "cargo tree of the outside crate",
    );
    let tree = String::from_utf8_lossy(&tree.stdout).into_owned();
    for cli_only in ["clap ", "tracing-subscriber ", "chrono ", "serde_json "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(cli_only)),
            "{cli_only}is in a plain dependent's tree:\n{tree}"
        );
    }
    let mut crates: Vec<&str> = tree.lines().map(|l| l.trim_end_matches(" (*)")).collect();
    crates.sort();
    crates.dedup();
    eprintln!("a plain dependent compiles {} crates", crates.len());
}

#[test]
fn the_workspace_packages_for_publishing() {
    let _one = CARGO.lock().unwrap_or_else(|e| e.into_inner());
    let target = root().join("target/package-check");
    // Packages every crate as crates.io would get it (zerorpc-zeromq first,
    // then zerorpc against that packaged copy) and builds each from its
    // package alone. Cargo unpacks the packaged crates under
    // $CARGO_HOME/registry/src and reuses an unpacked crate of the same
    // name and version: a copy from an earlier run would stand in for
    // today's sources. So this runs with its own CARGO_HOME, sharing the
    // real one's downloads and configuration, with a fresh unpack area.
    let home = root().join("target/package-home");
    let real_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("registry")).unwrap();
    for shared in [
        "registry/index",
        "registry/cache",
        "config.toml",
        "credentials.toml",
    ] {
        let from = real_home.join(shared);
        if from.exists() {
            std::os::unix::fs::symlink(&from, home.join(shared)).unwrap();
        }
    }
    // (Compiled registry crates are never rebuilt either: none may be
    // left from an earlier run.)
    let _ = std::fs::remove_dir_all(&target);
    run(
        cargo().current_dir(root()).env("CARGO_HOME", &home).args([
            "package",
            "--workspace",
            // (The comparison with tarpc and tonic is a tool of this
            // repository: `publish = false`.)
            "--exclude",
            "zrpc-compare",
            "--locked",
            "--allow-dirty",
            "--target-dir",
            target.to_str().unwrap(),
        ]),
        "cargo package --workspace",
    );
    for name in ["zerorpc-0.1.0", "zerorpc-zeromq-0.7.0"] {
        let krate = target.join("package").join(format!("{name}.crate"));
        assert!(krate.exists(), "{} was not written", krate.display());
    }
}
