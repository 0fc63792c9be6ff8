//! The `asterism` command line: parses the arguments (clap), runs one command through the
//! engine (or the gRPC server) and prints its result as text or, with `--json`, as one JSON
//! document. It imports the library's `engine`, `server`, `alert`, `source`, `synth`, `model`,
//! `store` (the write and count types), `graph` (the type `explain` returns) and `export`, and
//! `anyhow` (allowed only here and in `main`). `args` holds the clap structs and their
//! resolution into configuration; `ingest`, `query`, `science` and `serve` the commands, by
//! group; `output` every line written to stdout. Only `run` is public.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Parser;

use asterism::engine::{Engine, EngineConfig};

mod admin;
mod args;
mod ingest;
mod output;
mod query;
mod science;
mod serve;
#[cfg(feature = "kafka")]
mod stream;

use args::Command;

#[derive(Parser, Debug)]
#[command(
    name = "asterism",
    version,
    about = "A similarity graph over sky-survey alert streams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Parses the command line and runs the command it names.
pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Generate(args) => ingest::generate(args),
        Command::Serve(args) => serve::serve(*args),
        Command::Ingest(args) => ingest::ingest(args),
        #[cfg(feature = "kafka")]
        Command::Consume(args) => stream::consume(args),
        #[cfg(feature = "kafka")]
        Command::Quarantine(args) => stream::quarantine(args),
        #[cfg(not(feature = "kafka"))]
        Command::Consume(_) | Command::Quarantine(_) => without_kafka(),
        Command::Object(args) => query::object(args),
        Command::Stats(args) => query::stats(args),
        Command::Similar(args) => query::similar(args),
        Command::Export(args) => query::export(args),
        Command::Clusters(args) => query::clusters(args),
        Command::Reindex(args) => ingest::reindex(args),
        Command::Labels(args) => science::labels(args),
        Command::Classify(args) => science::classify(args),
        Command::Evaluate(args) => science::evaluate(args),
        Command::Anomalies(args) => science::anomalies(args),
        Command::Vote(args) => science::vote(args),
        Command::Recommend(args) => science::recommend(args),
        Command::Explain(args) => query::explain(args),
        Command::Backup(args) => admin::backup(args),
        Command::Check(args) => admin::check(args),
    }
}

#[cfg(not(feature = "kafka"))]
fn without_kafka() -> Result<()> {
    anyhow::bail!("this asterism was built without Kafka (cargo feature `kafka`)")
}

/// Opens a database that must already exist (queries never create one).
fn open_existing(path: &Path) -> Result<Engine> {
    if !path.is_dir() {
        anyhow::bail!(
            "no database at {} (run `asterism ingest` first)",
            path.display()
        );
    }
    let engine = Engine::open(path, EngineConfig::default())
        .with_context(|| format!("opening {}", path.display()))?;
    // One command, then the process exits.
    engine.skip_index_teardown();
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own checks of the parser (ids, defaults, the `mut_arg` on `serve`'s `--no-sync`).
    #[test]
    fn the_parser_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
