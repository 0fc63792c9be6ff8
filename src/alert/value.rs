//! Reading fields out of decoded records, whatever container they came in.
//!
//! Avro records arrive as `apache_avro::types::Value`; Parquet rows are converted to the same
//! `Value` here ([`arrow_row`]), so the ZTF and LSST decoders are written once for both.

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value;
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, LargeBinaryArray, LargeStringArray, MapArray,
    StringArray, StructArray,
};
use arrow::datatypes::{
    DataType, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::record_batch::RecordBatch;

use crate::model::AnnotationValue;

/// Strips union wrappers.
pub fn plain(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => plain(inner),
        other => other,
    }
}

/// The named field of a record, `None` when absent or null.
pub fn field<'a>(record: &'a Value, name: &str) -> Option<&'a Value> {
    match plain(record) {
        Value::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| plain(v))
            .filter(|v| !matches!(v, Value::Null)),
        Value::Map(map) => map
            .get(name)
            .map(plain)
            .filter(|v| !matches!(v, Value::Null)),
        _ => None,
    }
}

/// The first of several alternative field names that is present (schemas renamed fields).
pub fn field_any<'a>(record: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| field(record, n))
}

pub fn as_f64(v: &Value) -> Option<f64> {
    match plain(v) {
        Value::Double(x) => Some(*x),
        Value::Float(x) => Some(f64::from(*x)),
        Value::Int(x) => Some(f64::from(*x)),
        Value::Long(x) => Some(*x as f64),
        _ => None,
    }
}

/// An integer field, from any numeric type: writers such as Spark store integer columns of
/// nested records as doubles, so an integral, finite float is read as the integer it holds.
pub fn as_i64(v: &Value) -> Option<i64> {
    match plain(v) {
        Value::Int(x) => Some(i64::from(*x)),
        Value::Long(x) => Some(*x),
        Value::Double(x) => integral(*x),
        Value::Float(x) => integral(f64::from(*x)),
        _ => None,
    }
}

/// `x` as an i64 when it is finite, whole and in range.
fn integral(x: f64) -> Option<i64> {
    // 2^63 is exactly representable; every double below it in magnitude converts exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (x.is_finite() && x.fract() == 0.0 && (-LIMIT..LIMIT).contains(&x)).then_some(x as i64)
}

pub fn as_str(v: &Value) -> Option<&str> {
    match plain(v) {
        Value::String(s) | Value::Enum(_, s) => Some(s),
        _ => None,
    }
}

pub fn f64_field(record: &Value, names: &[&str]) -> Option<f64> {
    field_any(record, names).and_then(as_f64)
}

pub fn i64_field(record: &Value, names: &[&str]) -> Option<i64> {
    field_any(record, names).and_then(as_i64)
}

pub fn str_field<'a>(record: &'a Value, names: &[&str]) -> Option<&'a str> {
    field_any(record, names).and_then(as_str)
}

/// The items of an array field (empty when absent or null).
pub fn items<'a>(record: &'a Value, names: &[&str]) -> &'a [Value] {
    match field_any(record, names) {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

/// A scalar as an annotation value; `None` for nulls, NaNs, blobs and containers.
pub fn annotation_value(v: &Value) -> Option<AnnotationValue> {
    match plain(v) {
        Value::Boolean(b) => Some(AnnotationValue::Bool(*b)),
        Value::String(s) | Value::Enum(_, s) => Some(AnnotationValue::Text(s.clone())),
        other => as_f64(other)
            .filter(|x| x.is_finite())
            .map(AnnotationValue::Number),
    }
}

/// Collects the broker columns of a record: every top-level field not named in `skip` that is
/// a scalar, and the scalar fields of top-level records as `outer.inner`.
pub fn collect_annotations(record: &Value, skip: &[&str]) -> BTreeMap<String, AnnotationValue> {
    let mut out = BTreeMap::new();
    let Value::Record(fields) = plain(record) else {
        return out;
    };
    for (name, value) in fields {
        if skip.contains(&name.as_str()) || name.starts_with("cutout") {
            continue;
        }
        match plain(value) {
            Value::Record(inner) => {
                for (inner_name, inner_value) in inner {
                    if let Some(a) = annotation_value(inner_value) {
                        out.insert(format!("{name}.{inner_name}"), a);
                    }
                }
            }
            other => {
                if let Some(a) = annotation_value(other) {
                    out.insert(name.clone(), a);
                }
            }
        }
    }
    out
}

/// Copies the named numeric fields of a packet's sub-record (`outer`: `candidate`,
/// `diaSource`, ...) into `out` as `outer.name` annotations: the context the embedding's
/// context group reads. Missing, null and non-finite fields are left out; survey sentinels
/// (ZTF's -999) are kept as sent, and the embedding masks them.
pub fn copy_context(
    out: &mut BTreeMap<String, AnnotationValue>,
    record: &Value,
    outer: &str,
    names: &[&str],
) {
    let Some(sub) = field(record, outer) else {
        return;
    };
    for name in names {
        if let Some(x) = f64_field(sub, &[name]).filter(|x| x.is_finite()) {
            out.insert(format!("{outer}.{name}"), AnnotationValue::Number(x));
        }
    }
}

/// Converts row `row` of a record batch to an Avro record, skipping columns named in `skip`.
pub fn arrow_row(batch: &RecordBatch, row: usize, skip: &dyn Fn(&str) -> bool) -> Value {
    let schema = batch.schema();
    let fields = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !skip(f.name()))
        .map(|(f, col)| (f.name().clone(), arrow_value(col, row)))
        .collect();
    Value::Record(fields)
}

fn arrow_value(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => Value::Boolean(array.as_boolean().value(row)),
        DataType::Int8 => Value::Int(i32::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => Value::Int(i32::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::Long(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::Int(i32::from(array.as_primitive::<UInt8Type>().value(row))),
        DataType::UInt16 => Value::Int(i32::from(array.as_primitive::<UInt16Type>().value(row))),
        DataType::UInt32 => Value::Long(i64::from(array.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(row);
            i64::try_from(v).map_or(Value::Double(v as f64), Value::Long)
        }
        DataType::Float16 => Value::Float(array.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => Value::Double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => downcast::<StringArray>(array)
            .map_or(Value::Null, |a| Value::String(a.value(row).to_string())),
        DataType::LargeUtf8 => downcast::<LargeStringArray>(array)
            .map_or(Value::Null, |a| Value::String(a.value(row).to_string())),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::Binary => downcast::<BinaryArray>(array)
            .map_or(Value::Null, |a| Value::Bytes(a.value(row).into())),
        DataType::LargeBinary => downcast::<LargeBinaryArray>(array)
            .map_or(Value::Null, |a| Value::Bytes(a.value(row).into())),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            Value::Long(v)
        }
        DataType::Struct(_) => match downcast::<StructArray>(array) {
            Some(s) => Value::Record(
                s.fields()
                    .iter()
                    .zip(s.columns())
                    .map(|(f, col)| (f.name().clone(), arrow_value(col, row)))
                    .collect(),
            ),
            None => Value::Null,
        },
        DataType::List(_) => list_value(&array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => list_value(&array.as_list::<i64>().value(row)),
        DataType::Map(_, _) => match downcast::<MapArray>(array) {
            Some(m) => {
                let entries = m.value(row);
                let mut map = HashMap::new();
                let keys = entries.column(0);
                let values = entries.column(1);
                for i in 0..entries.len() {
                    if let Value::String(k) = arrow_value(keys, i) {
                        map.insert(k, arrow_value(values, i));
                    }
                }
                Value::Map(map)
            }
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

fn list_value(values: &ArrayRef) -> Value {
    Value::Array((0..values.len()).map(|i| arrow_value(values, i)).collect())
}

fn downcast<T: 'static>(array: &ArrayRef) -> Option<&T> {
    array.as_any().downcast_ref::<T>()
}

/// Reads a boolean-ish column value (some tables store flags as numbers).
pub fn as_bool(v: &Value) -> Option<bool> {
    match plain(v) {
        Value::Boolean(b) => Some(*b),
        other => as_f64(other).map(|x| x > 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::BooleanArray;
    use std::sync::Arc;

    #[test]
    fn arrow_rows_become_records() {
        let ids: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
        let flags: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        let batch = RecordBatch::try_from_iter(vec![("id", ids), ("flag", flags)]).unwrap();
        let row = arrow_row(&batch, 1, &|_| false);
        assert_eq!(field(&row, "id"), None);
        assert_eq!(field(&row, "flag").and_then(as_bool), Some(false));
        let row = arrow_row(&batch, 0, &|n| n == "flag");
        assert_eq!(str_field(&row, &["id"]), Some("a"));
        assert_eq!(field(&row, "flag"), None);
    }
}
