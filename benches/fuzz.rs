//! A coverage-free mutation fuzzer over every decoder entry point, seeded with the real packets
//! of `data/` (the corpora, mutators and loop are in `support/fuzz.rs`).
//!
//! ```text
//! cargo bench --profile dev --bench fuzz -- --target avro --seconds 300 [--seed 1]
//!     [--iterations N] [--findings DIR] [--slow-ms 2000] [--hang-s 60] [--max-seed-bytes N]
//!     [--fail-on-slow]
//! cargo bench --profile dev --bench fuzz -- --target avro --seed 1 --replay 1234
//! ```
//!
//! Targets: `sniff`, `avro`, `confluent`, `parquet`, `csv`, `archive`, or `all` (the default,
//! each in turn). Progress and findings go to stderr, one JSON summary per target to stdout.
//! Panicking and slow inputs are written to `--findings` (default
//! `$CARGO_TARGET_DIR/fuzz-findings/TARGET/`). Exit status 1 when a panic was found (or a slow
//! call, with `--fail-on-slow`), 3 on a hang (a call past `--hang-s`). Slow calls are otherwise
//! reported and written but do not fail the run: one is known and open (BENCHMARKS.md, Parquet
//! dictionary pages). `--max-seed-bytes` keeps only the smaller seeds (small reproducers). Rejects are the normal outcome; only panics, slow calls and hangs are findings.

#[path = "support/fuzz.rs"]
mod fuzz;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fuzz::{Corpus, RunConfig, Target};

/// The value after `flag` on the command line (`cargo bench` adds `--bench`, which is ignored).
fn value(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number<T: std::str::FromStr>(flag: &str) -> Option<T> {
    let v = value(flag)?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("{flag}: not a number: {v}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let targets = match value("--target").as_deref() {
        None | Some("all") => Target::ALL.to_vec(),
        Some(name) => match Target::parse(name) {
            Some(t) => vec![t],
            None => {
                eprintln!("--target: one of sniff, avro, confluent, parquet, csv, archive, all");
                std::process::exit(2);
            }
        },
    };
    let seed = number("--seed").unwrap_or(1u64);
    let iterations: Option<u64> = number("--iterations");
    let seconds: Option<f64> = number("--seconds");
    // Without a limit (a plain `cargo bench`): ten seconds per target.
    let seconds = if iterations.is_none() && seconds.is_none() {
        Some(10.0)
    } else {
        seconds
    };
    let target_dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let mut found = false;
    for target in targets {
        let loaded = Corpus::load(target).and_then(|c| match number::<usize>("--max-seed-bytes") {
            Some(max) => c.small(max),
            None => Ok(c),
        });
        let corpus = match loaded {
            Ok(c) => Arc::new(c),
            Err(e) => {
                eprintln!("fuzz {}: cannot build the seed corpus: {e}", target.name());
                std::process::exit(2);
            }
        };
        let findings_dir = value("--findings")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(&target_dir).join("fuzz-findings"))
            .join(target.name());
        if let Some(iteration) = number::<u64>("--replay") {
            let (name, bytes) = corpus.input(seed, iteration);
            let out = findings_dir.join(format!("replay-{seed}-{iteration}.bin"));
            let written =
                std::fs::create_dir_all(&findings_dir).and_then(|_| std::fs::write(&out, &bytes));
            if let Err(e) = written {
                eprintln!("{}: {e}", out.display());
            }
            eprintln!(
                "replaying {name} ({} bytes, written to {})",
                bytes.len(),
                out.display()
            );
            // Without catch_unwind: the panic prints with its backtrace.
            let d = asterism::alert::decode(&name, &bytes, &corpus.opts);
            eprintln!("{} alerts, rejects: {:?}", d.alerts.len(), d.rejects);
            continue;
        }
        let cfg = RunConfig {
            seed,
            iterations,
            duration: seconds.map(Duration::from_secs_f64),
            slow: Duration::from_millis(number("--slow-ms").unwrap_or(2000)),
            hang: Duration::from_secs(number("--hang-s").unwrap_or(60)),
            findings_dir: Some(findings_dir),
            progress: Some(Duration::from_secs(30)),
        };
        eprintln!(
            "fuzz {}: {} seeds, seed {seed}, {}",
            target.name(),
            corpus.seeds.len(),
            match (iterations, seconds) {
                (Some(n), _) => format!("{n} iterations"),
                (None, Some(s)) => format!("{s} s"),
                (None, None) => String::new(),
            }
        );
        let summary = fuzz::run(corpus, &cfg);
        eprintln!(
            "fuzz {}: {} executions in {:.1} s ({:.1}/s), {} alerts, {} rejects, slowest call {} ms, {} findings",
            target.name(),
            summary.executions,
            summary.seconds,
            summary.exec_per_s(),
            summary.alerts,
            summary.rejects,
            summary.slowest_call.as_millis(),
            summary.findings.len()
        );
        println!("{}", summary.json());
        let fail_on_slow = std::env::args().any(|a| a == "--fail-on-slow");
        found |= summary
            .findings
            .iter()
            .any(|f| f.kind == "panic" || fail_on_slow);
    }
    if found {
        std::process::exit(1);
    }
}
