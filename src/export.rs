//! Export of objects and their embeddings to Parquet, for pandas and Spark users.
//!
//! One row per object: `object_id`, `survey`, `n_detections`, `last_mjd`, `embedding`
//! (list<float32>, the current scaled vector; null if none), `labels` (the broker
//! classifications found in its annotations, `name=value` joined by `; `). Imports `engine`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Float64Builder, ListBuilder, StringBuilder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::engine::{Engine, EngineError};
use crate::model::{AnnotationValue, ObjectRecord};
use crate::science::taxonomy::LABEL_FIELDS;

/// Rows written per record batch.
const ROWS_PER_BATCH: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("writing {path}: {detail}")]
    Write { path: String, detail: String },
}

fn labels(r: &ObjectRecord) -> Option<String> {
    let found: Vec<String> = LABEL_FIELDS
        .iter()
        .filter_map(|(name, _)| {
            r.annotations.get(*name).and_then(|a| match &a.value {
                AnnotationValue::Text(t) if !t.is_empty() && t != "Unknown" => {
                    Some(format!("{name}={t}"))
                }
                _ => None,
            })
        })
        .collect();
    (!found.is_empty()).then(|| found.join("; "))
}

struct Builders {
    id: StringBuilder,
    survey: StringBuilder,
    n: UInt32Builder,
    last: Float64Builder,
    emb: ListBuilder<Float32Builder>,
    labels: StringBuilder,
}

impl Builders {
    fn new() -> Builders {
        Builders {
            id: StringBuilder::new(),
            survey: StringBuilder::new(),
            n: UInt32Builder::new(),
            last: Float64Builder::new(),
            emb: ListBuilder::new(Float32Builder::new()).with_field(Field::new(
                "item",
                DataType::Float32,
                false,
            )),
            labels: StringBuilder::new(),
        }
    }

    fn finish(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch, arrow::error::ArrowError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.survey.finish()),
            Arc::new(self.n.finish()),
            Arc::new(self.last.finish()),
            Arc::new(self.emb.finish()),
            Arc::new(self.labels.finish()),
        ];
        RecordBatch::try_new(schema.clone(), cols)
    }
}

/// Writes every object to `path`; returns the number of rows.
pub fn export_parquet(engine: &Engine, path: &Path) -> Result<usize, ExportError> {
    let werr = |e: &dyn std::fmt::Display| ExportError::Write {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("object_id", DataType::Utf8, false),
        Field::new("survey", DataType::Utf8, false),
        Field::new("n_detections", DataType::UInt32, false),
        Field::new("last_mjd", DataType::Float64, true),
        Field::new(
            "embedding",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
            true,
        ),
        Field::new("labels", DataType::Utf8, true),
    ]));
    let file = File::create(path).map_err(|e| werr(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| werr(&e))?;
    let mut b = Builders::new();
    let mut rows = 0usize;
    let mut pending = 0usize;
    let mut failure: Option<ExportError> = None;
    engine
        .store()
        .for_each_object(|r| {
            b.id.append_value(&r.object_id);
            b.survey.append_value(r.survey.as_str());
            b.n.append_value(r.detections.len() as u32);
            b.last.append_option(r.meta.last_mjd);
            match engine.vector(&r.object_id) {
                Ok((v, _)) => {
                    b.emb.values().append_slice(&v);
                    b.emb.append(true);
                }
                // An object too short to embed has no vector: a null. Any other error stops
                // the export rather than writing a null where a vector exists.
                Err(EngineError::NoEmbedding { .. }) => b.emb.append(false),
                Err(e) => {
                    failure = Some(e.into());
                    return false;
                }
            }
            b.labels.append_option(labels(&r));
            rows += 1;
            pending += 1;
            if pending == ROWS_PER_BATCH {
                pending = 0;
                if let Err(e) = b
                    .finish(&schema)
                    .map_err(|e| werr(&e))
                    .and_then(|batch| writer.write(&batch).map_err(|e| werr(&e)))
                {
                    failure = Some(e);
                    return false;
                }
            }
            true
        })
        .map_err(EngineError::from)?;
    if let Some(e) = failure {
        return Err(e);
    }
    if pending > 0 {
        let batch = b.finish(&schema).map_err(|e| werr(&e))?;
        writer.write(&batch).map_err(|e| werr(&e))?;
    }
    writer.close().map_err(|e| werr(&e))?;
    Ok(rows)
}
