//! The fuzzer of `benches/fuzz.rs` in miniature: a few hundred deterministic mutations of the
//! real packets of `data/` per decoder entry point (sniffing, Avro containers, Confluent frames,
//! Parquet, CSV, tar/gzip), none of which may panic or take more than a few seconds, and the
//! property that replays a finding: an input is a function of the run's seed and its iteration.
//! Not timed; the long runs are `scripts/fuzz-smoke` and `cargo bench --bench fuzz`.

#[path = "../benches/support/fuzz.rs"]
mod fuzz;

use std::sync::Arc;
use std::time::Duration;

use fuzz::{Corpus, RunConfig, Target};

#[test]
fn every_decoder_entry_point_survives_mutated_real_packets() {
    const ITERATIONS: u64 = 300;
    for target in Target::ALL {
        // The multi-megabyte containers are left to the long runs: unoptimised, each of their
        // mutations costs a second.
        let corpus = Corpus::load(target)
            .and_then(|c| c.small(200_000))
            .unwrap_or_else(|e| panic!("{}: {e}", target.name()));
        let cfg = RunConfig {
            seed: 7,
            iterations: Some(ITERATIONS),
            duration: None,
            slow: Duration::from_secs(10),
            hang: Duration::from_secs(120),
            findings_dir: None,
            progress: None,
        };
        let summary = fuzz::run(Arc::new(corpus), &cfg);
        assert_eq!(summary.executions, ITERATIONS, "{}", target.name());
        assert!(
            summary.findings.is_empty(),
            "{}: {:#?}",
            target.name(),
            summary.findings
        );
        assert!(
            summary.rejects > 0,
            "{}: mutated inputs were all accepted: the mutators do nothing?",
            target.name()
        );
    }
}

#[test]
fn fuzz_inputs_replay_from_seed_and_iteration() {
    let corpus = Corpus::load(Target::Csv).expect("csv seeds");
    for iteration in 0..20 {
        assert_eq!(corpus.input(3, iteration), corpus.input(3, iteration));
    }
    let changed = (0..20)
        .filter(|&i| {
            let (name, bytes) = corpus.input(3, i);
            corpus
                .seeds
                .iter()
                .any(|s| s.name == name && s.bytes != bytes)
        })
        .count();
    assert!(
        changed >= 18,
        "only {changed} of 20 inputs differ from their seed"
    );
    assert_ne!(corpus.input(3, 0), corpus.input(4, 0));
}

/// A fuzz finding too large to keep as a file (the 925 kB Fink TDE Parquet file with one
/// mutation, on which arrow's bitmap reader panicked), regenerated from its seed and iteration.
/// The mutation lands in a page header, which the page-header walk now rejects before the
/// reader sees it (the reader's panic is still caught if it gets that far).
/// If the mutators change, the input changes: the length check says so, and the finding's new
/// coordinates come from a run of `cargo bench --bench fuzz -- --target parquet --seed 1`.
#[test]
fn parquet_validity_bitmap_out_of_bounds_is_rejected_not_a_panic() {
    let corpus = Corpus::load(Target::Parquet).expect("parquet seeds");
    let (name, bytes) = corpus.input(1, 1905);
    assert_eq!(
        (name.as_str(), bytes.len()),
        ("fink/tde_ZTF20abfcszi_202008.parquet", 925_569),
        "the mutators changed: find this input's new iteration"
    );
    let d = asterism::alert::decode(&name, &bytes, &corpus.opts);
    assert!(
        d.rejects.iter().any(|r| matches!(
            &r.error,
            asterism::alert::DecodeError::Parquet { detail }
                if detail.contains("malformed file: row group 0 column 168: page 0 at byte 0")
        )),
        "{:?}",
        d.rejects
    );
}
