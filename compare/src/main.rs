//! `zrpc-compare`: zrpc beside tarpc and tonic, measured in one run on this
//! machine. Each framework's server runs in a process of its own (started
//! afresh each round); the clients run here, on a runtime of the same
//! flavour. Rounds interleave the frameworks, so drift on a busy machine
//! hits all alike; figures are medians over rounds, with their ranges.
//!
//! | file | what |
//! |---|---|
//! | `frameworks.rs` | the echo service and its client in each framework |
//! | `measure.rs` | one round of one framework: every figure |
//! | `floor.rs` | the sequential exchange over plain TCP, under them all |
//! | `main.rs` | rounds, the table, the targets, `--json` |

mod floor;
mod frameworks;
mod measure;

use clap::Parser;
use frameworks::{Framework, ALL};
use measure::{Counts, Figures, FIGURES};
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Parser, Debug)]
#[command(
    name = "zrpc-compare",
    about = "zrpc side by side with tarpc (bincode over TCP) and tonic (gRPC) on loopback",
    after_help = "Ratios are zrpc's median divided by the other's, from the same run."
)]
struct Opts {
    /// Rounds (each framework once per round, servers started afresh).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Runtime flavour of servers and clients: current, multi or both.
    #[arg(long, default_value = "both", value_parser = ["current", "multi", "both"])]
    runtime: String,
    /// Small counts (a smoke run: figures are not meaningful).
    #[arg(long)]
    quick: bool,
    /// One JSON object on stdout instead of the tables.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    serve: Option<Serve>,
}

#[derive(clap::Subcommand, Debug)]
enum Serve {
    /// (Internal) serve one framework: prints `READY <port>`, serves until
    /// stdin closes.
    #[command(hide = true)]
    Serve { framework: String, runtime: String },
}

fn runtime(flavour: &str) -> std::io::Result<tokio::runtime::Runtime> {
    match flavour {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

fn main() {
    let opts = Opts::parse();
    let code = match &opts.serve {
        Some(Serve::Serve { framework, runtime }) => serve(framework, runtime),
        None => compare(&opts),
    };
    std::process::exit(match code {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("zrpc-compare: {e}");
            1
        }
    });
}

fn serve(framework: &str, flavour: &str) -> Result<(), String> {
    let fw = Framework::parse(framework);
    if fw.is_none() && framework != floor::NAME {
        return Err(format!("no framework {framework}"));
    }
    let rt = runtime(flavour).map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (port, _keep) = match fw {
            Some(fw) => frameworks::serve(fw).await?,
            None => floor::serve().await?,
        };
        println!("READY {port}");
        let _ = std::io::stdout().flush();
        // Until the parent closes stdin (or dies).
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        use tokio::io::AsyncReadExt;
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        Ok(())
    })
}

/// Each figure's rounds, per framework, per flavour.
type Runs = BTreeMap<String, BTreeMap<&'static str, Vec<Figures>>>;

fn compare(o: &Opts) -> Result<(), String> {
    let counts = if o.quick {
        Counts {
            seq: 200,
            pipelined: 2_000,
            large_mb: 8,
        }
    } else {
        Counts {
            seq: 5_000,
            pipelined: 100_000,
            // 1 GiB a round: 256 MB lasted a tenth of a second for zrpc,
            // and this shared machine's noise swung such rounds by up to
            // 2x, for every framework alike.
            large_mb: 1024,
        }
    };
    let flavours: Vec<&str> = match o.runtime.as_str() {
        "both" => vec!["current", "multi"],
        one => vec![one],
    };
    let mut runs = Runs::new();
    let steps = flavours.len() * o.rounds as usize * ALL.len();
    let mut step = 0;
    for flavour in &flavours {
        let rt = runtime(flavour).map_err(|e| e.to_string())?;
        for _ in 0..o.rounds {
            for fw in ALL {
                step += 1;
                eprint!(
                    "\r\x1b[2K[{step}/{steps}] {} on {flavour}_thread",
                    fw.name()
                );
                let f = rt
                    .block_on(measure::round(fw, flavour, counts))
                    .map_err(|e| format!("{}: {e}", fw.name()))?;
                runs.entry(flavour.to_string())
                    .or_default()
                    .entry(fw.name())
                    .or_default()
                    .push(f);
            }
            let f = rt
                .block_on(measure::floor_round(flavour, counts))
                .map_err(|e| format!("the TCP floor: {e}"))?;
            runs.entry(flavour.to_string())
                .or_default()
                .entry(floor::NAME)
                .or_default()
                .push(f);
        }
    }
    eprint!("\r\x1b[2K");
    if o.json {
        println!("{}", json(&runs));
    } else {
        for (flavour, by_fw) in &runs {
            print_table(flavour, by_fw);
        }
    }
    Ok(())
}

fn values(rounds: &[Figures], figure: &str) -> Vec<f64> {
    rounds
        .iter()
        .filter_map(|f| f.get(figure).copied())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The targets: (figure, bound on zrpc/tarpc, bound on zrpc/tonic);
/// an upper bound for figures where less is better, a lower one otherwise.
const TARGETS: &[(&str, Option<f64>, Option<f64>)] = &[
    ("seq_latency_median_us", Some(0.8), Some(1.0 / 3.0)),
    ("calls_per_s_1conn_256", Some(1.5), Some(3.0)),
    ("calls_per_s_8conn", Some(1.5), Some(3.0)),
    ("echo_1mib_mb_per_s", Some(1.2), Some(1.2)),
    ("server_rss_peak_mb", Some(1.0), None),
    ("cpu_us_per_call", Some(0.7), Some(1.0 / 3.0)),
];

fn target(figure: &str) -> Option<(Option<f64>, Option<f64>)> {
    TARGETS
        .iter()
        .find(|(f, ..)| *f == figure)
        .map(|(_, a, b)| (*a, *b))
}

fn met(ratio: f64, bound: f64, more_is_better: bool) -> bool {
    if more_is_better {
        ratio >= bound
    } else {
        ratio <= bound
    }
}

/// One framework's rounds of one figure.
struct Cell {
    rounds: Vec<f64>,
    median: f64,
    lo: f64,
    hi: f64,
}

/// zrpc's median against another's, and the target, if any.
struct Ratio {
    other: &'static str,
    ratio: f64,
    target: Option<f64>,
    met: Option<bool>,
}

/// One figure of one flavour: every framework, and zrpc's ratios.
struct Row {
    figure: &'static str,
    unit: &'static str,
    more_is_better: bool,
    cells: BTreeMap<&'static str, Cell>,
    ratios: Vec<Ratio>,
}

fn summarize(by_fw: &BTreeMap<&'static str, Vec<Figures>>) -> Vec<Row> {
    FIGURES
        .iter()
        .map(|&(figure, unit, more)| {
            let cells: BTreeMap<&'static str, Cell> = ALL
                .iter()
                .map(|fw| {
                    let v = by_fw
                        .get(fw.name())
                        .map(|r| values(r, figure))
                        .unwrap_or_default();
                    let (lo, hi) = v
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
                    let median = median(v.clone());
                    let cell = Cell {
                        rounds: v,
                        median,
                        lo,
                        hi,
                    };
                    (fw.name(), cell)
                })
                .collect();
            let goal = target(figure);
            let ratios = ["tarpc", "tonic"]
                .into_iter()
                .enumerate()
                .map(|(i, other)| {
                    let ratio = cells["zrpc"].median / cells[other].median;
                    let target = goal.and_then(|g| if i == 0 { g.0 } else { g.1 });
                    Ratio {
                        other,
                        ratio,
                        target,
                        met: target.map(|b| met(ratio, b, more)),
                    }
                })
                .collect();
            Row {
                figure,
                unit,
                more_is_better: more,
                cells,
                ratios,
            }
        })
        .collect()
}

/// zrpc's 1 MiB echo, best round over worst (the target: under 1.5).
fn large_stability(rows: &[Row]) -> f64 {
    rows.iter()
        .find(|r| r.figure == "echo_1mib_mb_per_s")
        .map_or(0.0, |r| r.cells["zrpc"].hi / r.cells["zrpc"].lo)
}

fn print_table(flavour: &str, by_fw: &BTreeMap<&'static str, Vec<Figures>>) {
    let rounds = by_fw.values().next().map_or(0, Vec::len);
    println!("\n{flavour}_thread runtime, {rounds} rounds: median (min–max); ratio = zrpc ÷ other");
    println!(
        "| figure | zrpc | tarpc | tonic | zrpc/tarpc | zrpc/tonic |\n|---|---|---|---|---|---|"
    );
    let rows = summarize(by_fw);
    for row in &rows {
        let mut line = format!("| {} ({}) |", row.figure, row.unit);
        for fw in ALL {
            let c = &row.cells[fw.name()];
            line += &format!(" {} ({}–{}) |", fmt(c.median), fmt(c.lo), fmt(c.hi));
        }
        let sign = if row.more_is_better { "≥" } else { "≤" };
        for r in &row.ratios {
            let verdict = match (r.target, r.met) {
                (Some(b), Some(true)) => format!(" (target {sign} {b:.2}: met)"),
                (Some(b), _) => format!(" (target {sign} {b:.2}: NOT met)"),
                _ => String::new(),
            };
            line += &format!(" {:.2}×{verdict} |", r.ratio);
        }
        println!("{line}");
    }
    println!(
        "zrpc 1 MiB echo max/min over rounds: {:.2} (target < 1.5)",
        large_stability(&rows)
    );
    if let Some(floor) = floor_of(by_fw) {
        let tarpc = median_of(by_fw, "tarpc", SEQ);
        println!(
            "floor: the same sequential exchange over plain tokio TCP, no framework: median {} µs ({}–{}), p99 {} µs; zrpc {:.2}×, tarpc {:.2}× of it (0.80× tarpc would be {:.2}× of it)",
            fmt(floor.median),
            fmt(floor.lo),
            fmt(floor.hi),
            fmt(floor.p99),
            floor.zrpc,
            tarpc / floor.median,
            0.8 * tarpc / floor.median,
        );
    }
}

const SEQ: &str = "seq_latency_median_us";

/// The TCP floor of one flavour, and zrpc's median over it.
struct Floor {
    median: f64,
    lo: f64,
    hi: f64,
    p99: f64,
    zrpc: f64,
}

fn floor_of(by_fw: &BTreeMap<&'static str, Vec<Figures>>) -> Option<Floor> {
    let rounds = by_fw.get(floor::NAME)?;
    let v = values(rounds, SEQ);
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let median = median(v);
    let zrpc = median_of(by_fw, "zrpc", SEQ) / median;
    Some(Floor {
        median,
        lo,
        hi,
        p99: median_of(by_fw, floor::NAME, "seq_latency_p99_us"),
        zrpc,
    })
}

fn median_of(by_fw: &BTreeMap<&'static str, Vec<Figures>>, fw: &str, figure: &str) -> f64 {
    median(by_fw.get(fw).map_or(vec![], |r| values(r, figure)))
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn json(runs: &Runs) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (flavour, by_fw) in runs {
        let rows = summarize(by_fw);
        let mut fl = serde_json::Map::new();
        for row in &rows {
            let mut fig = serde_json::Map::new();
            for (fw, c) in &row.cells {
                fig.insert(
                    (*fw).into(),
                    serde_json::json!({ "median": c.median, "rounds": c.rounds }),
                );
            }
            for r in &row.ratios {
                fig.insert(
                    format!("zrpc_over_{}", r.other),
                    serde_json::json!({ "ratio": r.ratio, "target": r.target, "met": r.met }),
                );
            }
            fl.insert(row.figure.into(), fig.into());
        }
        fl.insert(
            "zrpc_echo_1mib_max_over_min".into(),
            serde_json::json!(large_stability(&rows)),
        );
        if let Some(floor) = floor_of(by_fw) {
            fl.insert(
                "tcp_floor_seq_latency_us".into(),
                serde_json::json!({
                    "median": floor.median,
                    "p99": floor.p99,
                    "rounds": by_fw.get(floor::NAME).map(|r| values(r, SEQ)),
                    "zrpc_over_floor": floor.zrpc,
                }),
            );
        }
        out.insert(flavour.clone(), fl.into());
    }
    out.into()
}
