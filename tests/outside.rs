//! The crate as others get it: the workspace packages for publishing, and a
//! project outside it that depends on `zerorpc` as crates.io would serve it
//! (those packages, not this checkout) runs the README's quick start; a
//! plain dependent compiles no command-line dependency.
//!
//! One cargo build, in its own target directory under `target/` (so it never
//! waits on the build lock of the build that runs the tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The packages a dependent of `zerorpc` gets from crates.io.
const PACKAGES: [&str; 3] = [
    "zerorpc-0.1.0",
    "zerorpc-zeromq-0.7.0",
    "zerorpc-macros-0.1.0",
];

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

/// Packages every crate of the workspace as `cargo publish` would upload
/// it and unpacks each into `into`, where a dependent finds it as it would
/// in the registry. (Building them is the outside crate's build.)
fn package_the_workspace(into: &Path) {
    let target = root().join("target/outside/package");
    let _ = std::fs::remove_dir_all(&target);
    run(
        cargo().current_dir(root()).args([
            "package",
            "--workspace",
            // (The comparison with tarpc and tonic is a tool of this
            // repository: `publish = false`.)
            "--exclude",
            "zrpc-compare",
            "--locked",
            "--allow-dirty",
            "--no-verify",
            "--target-dir",
            target.to_str().unwrap(),
        ]),
        "cargo package --workspace",
    );
    std::fs::create_dir_all(into).unwrap();
    for name in PACKAGES {
        let krate = target.join("package").join(format!("{name}.crate"));
        assert!(krate.exists(), "{} was not written", krate.display());
        run(
            Command::new("tar")
                .arg("-xzf")
                .arg(&krate)
                .arg("-C")
                .arg(into),
            "unpacking a package (tar)",
        );
    }
}

/// A crate in `dir` that depends on `zerorpc` by version, with crates.io's
/// copies of this workspace's packages standing for the ones in `packages`
/// (the only `[patch]`: no crate of crates.io is replaced).
fn write_outside_crate(dir: &Path, packages: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let mut manifest = r#"[package]
name = "outside"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
zerorpc = "0.1.0"
tokio = { version = "1", features = ["macros", "rt-multi-thread", "sync", "time"] }
serde = { version = "1", features = ["derive"] }
futures = "0.3"

# Its own workspace: nothing is inherited from the one above.
[workspace]

# What crates.io would serve for this workspace's packages.
[patch.crates-io]
"#
    .to_string();
    for name in PACKAGES {
        let (krate, _version) = name.rsplit_once('-').unwrap();
        let path = packages.join(name).display().to_string();
        manifest.push_str(&format!("{krate} = {{ path = {path:?} }}\n"));
    }
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), readme_quick_start()).unwrap();
    // The workspace's lock pins the versions it is tested with; cargo
    // drops what the outside crate does not use and adds the rest.
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
}

#[test]
fn the_packaged_crates_build_and_run_the_readme_quick_start() {
    let started = Instant::now();
    let packages = root().join("target/outside/packages");
    let _ = std::fs::remove_dir_all(&packages);
    package_the_workspace(&packages);

    let dir = root().join("target/outside/crate");
    let _ = std::fs::remove_dir_all(&dir);
    write_outside_crate(&dir, &packages);
    // Compiled copies of the packages from an earlier run could stand in
    // for today's (unpacking keeps the archive's times): none may be left.
    let target = root().join("target/outside/target");
    let mut clean = cargo();
    clean
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .arg("clean");
    for name in PACKAGES {
        clean.args(["-p", name.rsplit_once('-').unwrap().0]);
    }
    run(&mut clean, "cargo clean of the packages' earlier builds");
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
        "packaged, built and ran in {:.0?}",
        started.elapsed().max(Duration::from_millis(1))
    );

    // The packages were used (not crates.io's crates of these names), and a
    // plain library dependent compiles none of the CLI's dependencies.
    let tree = run(
        cargo()
            .current_dir(&dir)
            .args(["tree", "-e", "normal", "--prefix", "none", "-p", "zerorpc"]),
        "cargo tree of the outside crate",
    );
    let tree = String::from_utf8_lossy(&tree.stdout).into_owned();
    for name in PACKAGES {
        let (krate, version) = name.rsplit_once('-').unwrap();
        let path = packages.join(name).display().to_string();
        assert!(
            tree.lines()
                .any(|l| l.starts_with(&format!("{krate} v{version} "))
                    && l.ends_with(&format!("({path})"))),
            "{krate} does not come from its package:\n{tree}"
        );
    }
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
