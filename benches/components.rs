//! The engine's parts one by one (criterion): feature extraction, HNSW insertion and search.
//!
//! `cargo bench --bench components`. Inputs: the real lightcurves of `data/lightcurves`
//! augmented by `asterism::synth` (seed 1) to 5,000 objects, embedded and scaled once.
//! Decode and store writes are in `benches/ingest.rs`.

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ndarray::Array2;

use asterism::embed::{Embedder, EmbeddingSpec};
use asterism::index::{HnswIndex, HnswParams, PointId, VectorInsert, VectorSearch};
use asterism::model::ObjectRecord;
use asterism::synth::{augment, Augment};
use support::real_records;

const OBJECTS: usize = 5_000;

/// Synthetic objects from the real lightcurves, as records.
fn objects() -> Vec<ObjectRecord> {
    let bases = real_records(&["lightcurves"]);
    (0..OBJECTS)
        .map(|i| {
            let a = augment(&bases[i % bases.len()], i as u64, 1, &Augment::default());
            let mut r = ObjectRecord::new(a.object_id.clone(), a.survey);
            r.merge(&a);
            r
        })
        .collect()
}

/// Scaled vectors of `records`.
fn vectors(embedder: &Embedder, records: &[ObjectRecord]) -> Vec<(PointId, Vec<f32>)> {
    let raws: Vec<Vec<f64>> = records.iter().map(|r| embedder.features(r, None)).collect();
    let mut m = Array2::<f64>::zeros((raws.len(), embedder.dim()));
    for (i, row) in raws.iter().enumerate() {
        for (j, x) in row.iter().enumerate() {
            m[[i, j]] = *x;
        }
    }
    let spec = EmbeddingSpec::initial(embedder).refit(&m);
    raws.iter()
        .enumerate()
        .map(|(i, raw)| (i as PointId, spec.scaler.transform(raw).0))
        .collect()
}

fn bench_embed(c: &mut Criterion) {
    let embedder = Embedder::new();
    let records = objects();
    let sample = &records[..500];
    let mut group = c.benchmark_group("embed");
    group.throughput(Throughput::Elements(sample.len() as u64));
    group.bench_function("500_lightcurves_1_thread", |b| {
        b.iter(|| {
            sample
                .iter()
                .map(|r| embedder.features(r, None).len())
                .sum::<usize>()
        })
    });
    group.finish();
}

fn bench_index(c: &mut Criterion) {
    let embedder = Embedder::new();
    let points = vectors(&embedder, &objects());
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    group.throughput(Throughput::Elements(points.len() as u64));
    group.bench_function(format!("insert_{}", points.len()), |b| {
        b.iter_batched(
            || HnswIndex::new(HnswParams::default()).expect("index"),
            |index| {
                index.insert(&points);
                index
            },
            BatchSize::PerIteration,
        )
    });
    let index = HnswIndex::new(HnswParams::default()).expect("index");
    index.insert(&points);
    let queries: Vec<&Vec<f32>> = points.iter().step_by(10).map(|(_, v)| v).collect();
    group.throughput(Throughput::Elements(queries.len() as u64));
    group.bench_function(format!("search_k10_ef64_{}_queries", queries.len()), |b| {
        b.iter(|| {
            queries
                .iter()
                .map(|q| index.search(q, 10, &|_| true).len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_embed, bench_index);
criterion_main!(benches);
