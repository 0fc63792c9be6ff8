//! Asterism: a similarity graph over the alert streams of time-domain sky surveys.
//!
//! Alerts (ZTF and Rubin/LSST Avro packets, Fink Parquet, lightcurve tables) are decoded into a
//! survey-neutral [`model::Alert`] by the pure [`alert`] decoders, merged into one de-duplicated
//! lightcurve per object and stored durably in RocksDB by [`store`], behind the [`engine`]
//! facade that the CLI and the gRPC [`server`] call. See ARCHITECTURE.md for the map.
//!
//! Layers, imports pointing down: `model` <- `alert` <- `source`; `model` <- `embed` <- `store`
//! <- `index` <- `graph` <- `engine` <- `export`, `stream` (Kafka), `server`, `cli`; `model` <- `science` (pure,
//! fed by the engine).

// No unsafe code but one measured exception, `memory` (mimalloc's `mi_collect` after passes
// over every object: 1M objects' reopened store; `setpriority` for the anomaly pass, which then
// gives way to queries; `madvise` for huge pages under the graph: BENCHMARKS.md), with a
// SAFETY note on each block.
#![deny(unsafe_code)]

pub mod alert;
pub mod embed;
pub mod engine;
pub mod export;
pub mod graph;
pub mod index;
#[allow(unsafe_code)]
pub mod memory;
pub mod model;
pub mod science;
pub mod server;
pub mod source;
pub mod store;
#[cfg(feature = "kafka")]
pub mod stream;
pub mod synth;

pub use alert::{decode, DecodeOptions, Decoded};
pub use engine::{Engine, EngineConfig, EngineError, IngestReport};
pub use model::{Alert, Band, Detection, ObjectRecord, Survey, Unit};
