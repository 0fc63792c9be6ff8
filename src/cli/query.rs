//! The commands that read the store and change nothing: `object`, `stats`, `similar`,
//! `clusters`, `explain`, and `export` (which writes a Parquet file, not the store). Each opens
//! an existing store, asks the engine one question and hands the answer to `output`.

use anyhow::Result;

use asterism::engine::{SimilarQuery, Target};
use asterism::export::export_parquet;

use super::args::{ClustersArgs, ExplainArgs, ExportArgs, ObjectArgs, SimilarArgs, StatsArgs};
use super::open_existing;
use super::output;

pub(super) fn object(args: ObjectArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let record = engine.object(&args.object_id)?;
    output::print_object(&record, args.json)
}

pub(super) fn stats(args: StatsArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let stats = engine.stats()?;
    let partitions = engine.store().offsets()?;
    output::print_stats(&stats, &partitions, args.json)
}

pub(super) fn similar(args: SimilarArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let mut query = SimilarQuery::new(Target::Object(args.object_id.clone()), args.k);
    query.as_of = args.as_of;
    query.features = args.features;
    query.weights = args.weights;
    query.at_age = args.at_age;
    query.filters = args.filters.filters();
    let neighbours = engine.find_similar(&query)?;
    output::print_similar(&args.object_id, args.as_of, &neighbours, args.json)
}

pub(super) fn export(args: ExportArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let rows = export_parquet(&engine, &args.out)?;
    output::print_export(rows, &args.out)
}

pub(super) fn clusters(args: ClustersArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let report = engine.clusters(args.k, args.seed)?;
    output::print_clusters(&report, args.json)
}

pub(super) fn explain(args: ExplainArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let e = engine.explain(&args.a, &args.b)?;
    output::print_explanation(&args.a, &args.b, &e, args.json)
}
