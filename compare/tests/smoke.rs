//! `zrpc-compare` runs end to end (tiny counts: a smoke run, no speed is
//! asserted) and its JSON has every figure for every framework.

use std::process::Command;

#[test]
fn a_quick_run_reports_every_figure_for_every_framework() {
    let out = Command::new(env!("CARGO_BIN_EXE_zrpc-compare"))
        .args(["--quick", "--rounds", "1", "--runtime", "current", "--json"])
        .output()
        .expect("run zrpc-compare");
    assert!(out.status.success(), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let current = &j["current"];
    for figure in [
        "seq_latency_median_us",
        "seq_latency_p99_us",
        "calls_per_s_1conn_256",
        "calls_per_s_8conn",
        "echo_1mib_mb_per_s",
        "server_rss_idle_mb",
        "server_rss_after_100k_mb",
        "server_rss_peak_mb",
    ] {
        for fw in ["zrpc", "tarpc", "tonic"] {
            let m = current[figure][fw]["median"].as_f64();
            assert!(m.is_some_and(|m| m > 0.0), "{figure} of {fw}: {m:?} in {j}");
        }
        assert!(
            current[figure]["zrpc_over_tarpc"]["ratio"].is_number(),
            "{j}"
        );
    }
    // Targets are stated with their verdict.
    let t = &current["calls_per_s_1conn_256"]["zrpc_over_tarpc"];
    assert_eq!(t["target"], serde_json::json!(1.5), "{j}");
    assert!(t["met"].is_boolean(), "{j}");
}
