//! Decoded values of the real packets in `data/`, for every format and schema version present.
//! Expected values were read from the same files with fastavro and pyarrow.

mod common;

use asterism::alert::{self, DecodeError, DecodeOptions};
use asterism::model::{AnnotationValue, Band, Survey, Unit};
use common::{data, decode};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A numeric annotation of an alert (panics when it is absent or not a number).
fn annotation_number(a: &asterism::model::Alert, name: &str) -> f64 {
    match a.annotations.get(name) {
        Some(AnnotationValue::Number(x)) => *x,
        other => panic!("{name}: {other:?}"),
    }
}

fn assert_close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-6, "{a} != {b}");
}

#[test]
fn ztf_schema_3_3_candidate_values() {
    let d = decode("ztf/472263571115115000.avro");
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    let a = &d.alerts[0];
    assert_eq!(a.object_id, "ZTF17aaajnnn");
    assert_eq!(a.alert_id, Some(472263571115115000));
    assert_eq!(a.survey, Survey::Ztf);
    let c = &a.detections[0];
    assert_close(c.mjd, 2458226.7635764 - 2400000.5);
    assert_eq!(c.band, Band::R);
    assert_close(c.value, 18.36185646057129);
    assert_close(c.error, 0.09404050558805466);
    assert_eq!(c.unit, Unit::DiffMag { positive: true });
    assert_eq!(a.detections.len(), 1);
    assert_eq!(
        a.upper_limits.len(),
        11,
        "prv rows without candid are limits"
    );
    assert_close(a.upper_limits[0].limit_mag, 18.8346004486084);
}

/// The candidate fields the embedding's context group reads are kept as annotations, as sent
/// (ZTF's -999 "none" sentinel included: the embedding reads it as a far distance).
#[test]
fn ztf_candidate_context_fields_become_annotations() {
    let d = decode("ztf/472263571115115000.avro");
    let a = &d.alerts[0];
    let number = |name: &str| annotation_number(a, name);
    assert_close(number("candidate.sgscore1"), 0.9882500171661377);
    assert_close(number("candidate.distpsnr1"), 0.08858367055654526);
    assert_close(number("candidate.srmag1"), 16.675500869750977);
    assert_close(number("candidate.distnr"), 0.08749596774578094);
    assert_close(number("candidate.magnr"), 16.426000595092773);
    assert_close(number("candidate.neargaia"), 0.07553768903017044);
    assert_close(number("candidate.ndethist"), 146.0);
    assert_close(number("candidate.drb"), 0.9876449704170227);
    assert_close(number("candidate.ssdistnr"), -999.0);
    assert!(
        !a.annotations.contains_key("candidate.magpsf"),
        "only the context fields"
    );
}

#[test]
fn ztf_schema_3_2_negative_difference_and_history() {
    let d = decode("ztf/2019_01_10_739260766315010006.avro");
    let a = &d.alerts[0];
    assert_eq!(a.object_id, "ZTF17aaacxxf");
    assert_eq!(a.detections[0].unit, Unit::DiffMag { positive: false });
    assert_close(a.detections[0].value, 15.371133804321289);
    assert_eq!(a.detections.len(), 23);
    assert_eq!(a.upper_limits.len(), 6);
}

#[test]
fn ztf_schema_1_8_public_alerts_and_malformed_neighbours() {
    let mut good = Vec::new();
    let mut bad = BTreeSet::new();
    for entry in std::fs::read_dir(data("ztf/ampel_20180601")).unwrap() {
        let path = entry.unwrap().path();
        let d = asterism::source::decode_file(&path, &DecodeOptions::default());
        good.extend(d.alerts);
        for r in d.rejects {
            assert!(matches!(r.error, DecodeError::Avro { .. }), "{r:?}");
            bad.insert(path.file_stem().unwrap().to_string_lossy().into_owned());
        }
    }
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    assert_eq!(
        bad,
        [
            "516401801315010009",
            "516434762915010006",
            "516442330015015017",
            "516442805615015004",
            "516476004815015005"
        ]
    );
    assert_eq!(good.len(), 4);
    let a = good
        .iter()
        .find(|a| a.object_id == "ZTF18aasnfkr")
        .expect("ZTF18aasnfkr");
    assert_eq!(a.detections.len(), 15);
    assert_eq!(a.upper_limits.len(), 4);
    assert_close(a.detections[0].value, 14.856250762939453);
}

#[test]
fn ztf_schema_1_3_ipac_alert_and_undecodable_one() {
    let d = decode("ztf/ipac/121540793515135000.avro");
    let a = &d.alerts[0];
    assert_eq!(a.object_id, "ZTF18aaaaaac");
    assert_eq!(a.alert_id, Some(-121540793515135000));
    assert_eq!(a.detections[0].band, Band::G);
    assert_close(a.detections[0].value, 15.43970012664795);
    // The simulated packet repeats epochs: 89 detection rows, 16 distinct (jd, fid).
    assert_eq!(a.detections.len(), 89);
    assert_eq!(a.upper_limits.len(), 48);
    let mut object = asterism::model::ObjectRecord::new(a.object_id.clone(), a.survey);
    object.merge(a);
    assert_eq!(object.detections.len(), 16);
    let bad = decode("ztf/ipac/121540793515135009.avro");
    assert!(bad.alerts.is_empty());
    assert_eq!(bad.rejects.len(), 1);
    assert!(bad.rejects[0]
        .source
        .ends_with("121540793515135009.avro#record 0"));
}

#[test]
fn ztf_schema_1_5_commissioning_tarball() {
    let d = decode("ztf/commissioning_2018-02.tar.gz");
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert_eq!(d.alerts.len(), 21);
    let a = d
        .alerts
        .iter()
        .find(|a| a.object_id == "ZTF18aaawcpm")
        .unwrap();
    assert_eq!(a.alert_id, Some(404105201415015000));
    assert_close(a.detections[0].value, 17.405723571777344);
    assert_eq!(a.upper_limits.len(), 132);
}

#[test]
fn ztf_schema_3_0_public_night_sample() {
    let d = decode("ztf/ztf_public_20180819_mod1000.tar.gz");
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert_eq!(d.alerts.len(), 30);
    let ids: BTreeSet<&str> = d.alerts.iter().map(|a| a.object_id.as_str()).collect();
    assert_eq!(ids.len(), 30);
    let a = d
        .alerts
        .iter()
        .find(|a| a.object_id == "ZTF18abcecyc")
        .unwrap();
    assert_eq!(a.detections[0].band, Band::G);
    assert_close(a.detections[0].value, 16.402511596679688);
    assert_eq!(a.detections[0].unit, Unit::DiffMag { positive: false });
}

#[test]
fn ztf_schema_3_1_and_3_2_successive_packets() {
    let d = decode("ztf/ZTF18abxhyqv.tar.gz");
    assert_eq!(d.alerts.len(), 4);
    assert!(d.alerts.iter().all(|a| a.object_id == "ZTF18abxhyqv"));
    let first = d
        .alerts
        .iter()
        .find(|a| a.alert_id == Some(673285273115015035))
        .unwrap();
    assert_eq!(first.detections[0].band, Band::I);
    assert_close(first.detections[0].value, 18.883150100708008);
}

/// ZTF's 4.x schema adds forced photometry (`fp_hists`). No 4.x packet is public in
/// ../shared/data, so this writes one datum with the real 4.02 schema files, filled with the
/// values of a real 3.3 alert and a forced-photometry row, and reads it back through the decoder
/// given the same schema directory.
#[test]
fn ztf_schema_4_forced_photometry() {
    use apache_avro::types::Value;
    let names = ["cutout", "candidate", "prv_candidate", "fp_hist", "alert"];
    let texts: Vec<String> = names
        .iter()
        .map(|n| std::fs::read_to_string(data(&format!("schema/ztf-4.02/{n}.avsc"))).unwrap())
        .collect();
    let schemata = apache_avro::Schema::parse_list(&texts).unwrap();
    let alert_schema = schemata
        .iter()
        .find(|s| s.name().is_some_and(|n| n.name() == "alert"))
        .unwrap()
        .clone();

    let real = decode("ztf/472263571115115000.avro");
    let real = &real.alerts[0];
    // Build the datum from the schema: every field null or zero, then the real values.
    let fill = |schema: &apache_avro::Schema, values: &[(&str, Value)]| -> Value {
        let apache_avro::Schema::Record(rec) = schema else {
            panic!("record expected")
        };
        Value::Record(
            rec.fields
                .iter()
                .map(|f| {
                    let v = values
                        .iter()
                        .find(|(n, _)| *n == f.name)
                        .map(|(_, v)| v.clone());
                    let v = v.unwrap_or_else(|| match &f.schema {
                        apache_avro::Schema::Union(_) => Value::Union(0, Box::new(Value::Null)),
                        apache_avro::Schema::Long => Value::Long(0),
                        apache_avro::Schema::Int => Value::Int(0),
                        apache_avro::Schema::Float => Value::Float(0.0),
                        apache_avro::Schema::Double => Value::Double(0.0),
                        apache_avro::Schema::String => Value::String(String::new()),
                        other => panic!("no default for {other:?}"),
                    });
                    (f.name.clone(), v)
                })
                .collect(),
        )
    };
    let find = |name: &str| {
        schemata
            .iter()
            .find(|s| s.name().is_some_and(|n| n.name() == name))
            .unwrap()
            .clone()
    };
    let c = &real.detections[0];
    let candidate = fill(
        &find("candidate"),
        &[
            ("jd", Value::Double(c.mjd + 2400000.5)),
            ("fid", Value::Int(2)),
            ("candid", Value::Long(472263571115115000)),
            ("magpsf", Value::Float(c.value as f32)),
            ("sigmapsf", Value::Float(c.error as f32)),
            ("isdiffpos", Value::String("t".into())),
            ("ra", Value::Double(179.6402013)),
            ("dec", Value::Double(52.0297203)),
        ],
    );
    let fp = fill(
        &find("fp_hist"),
        &[
            ("jd", Value::Double(2458224.7012384)),
            ("fid", Value::Int(2)),
            (
                "forcediffimflux",
                Value::Union(1, Box::new(Value::Float(152.5))),
            ),
            (
                "forcediffimfluxunc",
                Value::Union(1, Box::new(Value::Float(12.25))),
            ),
        ],
    );
    let alert = fill(
        &alert_schema,
        &[
            ("schemavsn", Value::String("4.02".into())),
            ("objectId", Value::String("ZTF17aaajnnn".into())),
            ("candid", Value::Long(472263571115115000)),
            ("candidate", candidate),
            (
                "fp_hists",
                Value::Union(1, Box::new(Value::Array(vec![fp]))),
            ),
        ],
    );
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&alert_schema)
        .schemata(schemata.iter().collect())
        .unwrap()
        .build()
        .unwrap()
        .write_value_to_vec(alert)
        .unwrap();
    let mut bytes = vec![0u8, 0, 0, 0, 4];
    bytes.extend_from_slice(&datum);
    let schema = asterism::source::load_schema(&data("schema/ztf-4.02")).unwrap();
    let opts = DecodeOptions {
        confluent_schema: Some(Arc::new(schema)),
        ..Default::default()
    };
    let d = alert::decode("v4.avro", &bytes, &opts);
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    let a = &d.alerts[0];
    assert_eq!(a.object_id, "ZTF17aaajnnn");
    assert_close(a.detections[0].value, c.value as f32 as f64);
    assert_eq!(a.forced.len(), 1);
    assert_eq!(a.forced[0].unit, Unit::FluxDn);
    assert_close(a.forced[0].value, 152.5);
    assert_close(a.forced[0].error, 12.25);
    assert_close(a.forced[0].mjd, 2458224.7012384 - 2400000.5);
}

#[test]
fn fink_avro_carries_cross_matches_and_scores() {
    let d = decode("fink/avro_multi_alerts.avro");
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert_eq!(d.alerts.len(), 11);
    let a = d
        .alerts
        .iter()
        .find(|a| a.object_id == "ZTF19acmbvwi")
        .unwrap();
    assert_close(a.detections[0].value, 18.367191314697266);
    assert!(matches!(
        a.annotations.get("cdsxmatch"),
        Some(AnnotationValue::Text(_))
    ));
    assert!(matches!(
        a.annotations.get("rfscore"),
        Some(AnnotationValue::Number(_))
    ));
    assert!(
        !a.annotations.contains_key("cjd"),
        "history arrays are not annotations"
    );
}

#[test]
fn fink_snappy_container() {
    let d = decode("fink/sample_snappy.avro");
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert_eq!(d.alerts.len(), 54);
    let ids: BTreeSet<&str> = d.alerts.iter().map(|a| a.object_id.as_str()).collect();
    assert_eq!(ids.len(), 47);
    let a = d
        .alerts
        .iter()
        .find(|a| a.alert_id == Some(1786142283715015000))
        .unwrap();
    assert_eq!(a.object_id, "ZTF18abadigg");
    assert_close(a.detections[0].value, 16.303049087524414);
}

#[test]
fn fink_parquet_tde_alerts() {
    let d = decode("fink/tde_ZTF20abfcszi_202008.parquet");
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert_eq!(d.alerts.len(), 21);
    assert!(d.alerts.iter().all(|a| a.object_id == "ZTF20abfcszi"));
    let a = d
        .alerts
        .iter()
        .find(|a| a.alert_id == Some(1322466014115015007))
        .unwrap();
    assert_eq!(a.detections[0].band, Band::G);
    assert_close(a.detections[0].value, 18.249177932739258);
    assert!(a.annotations.contains_key("rf_snia_vs_nonia"));
    assert!(a.annotations.contains_key("cdsxmatch"));
}

#[test]
fn rubin_schema_10_real_alerts() {
    let d = decode("lsst/rubin_v10_0_fink.avro");
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert_eq!(d.alerts.len(), 7);
    let a = d
        .alerts
        .iter()
        .find(|a| a.alert_id == Some(170094456272322680))
        .unwrap();
    assert_eq!(a.survey, Survey::Lsst);
    assert_eq!(a.object_id, "170028485706776685");
    let t = &a.detections[0];
    assert_close(t.mjd, 61105.093643486834);
    assert_eq!(t.band, Band::I);
    assert_eq!(t.unit, Unit::FluxNjy);
    assert_close(t.value, -19549.39453125);
    assert_close(t.error, 555.803955078125);
    assert_eq!(a.detections.len(), 346);
    assert!(a.forced.len() >= 395);
    let bands: BTreeSet<&Band> = a.detections.iter().map(|d| &d.band).collect();
    assert!(bands.len() >= 3, "multi-band history: {bands:?}");
    assert!(a.annotations.contains_key("clf.cats_class"));
    // The context fields of the diaSource and diaObject; a null field is left out.
    let number = |name: &str| annotation_number(a, name);
    assert_close(number("diaSource.extendedness"), 0.03993349149823189);
    assert_close(number("diaSource.reliability"), 0.8754439353942871);
    assert_close(number("diaSource.templateFlux"), 211381.984375);
    assert_close(number("diaObject.nDiaSources"), 346.0);
    assert!(!a.annotations.contains_key("diaObject.nearbyObj1Dist"));
}

#[test]
fn rubin_confluent_wire_format_with_schema_files() {
    let framed = common::rubin_confluent_datum();
    let dir = data("schema/lsst-10.0");
    let no_schema = alert::decode("kafka:0", &framed, &DecodeOptions::default());
    assert_eq!(
        no_schema.rejects[0].error,
        DecodeError::NeedsSchema { schema_id: 673 }
    );
    let schema = asterism::source::load_schema(&dir).unwrap();
    let opts = DecodeOptions {
        confluent_schema: Some(Arc::new(schema)),
        ..Default::default()
    };
    let d = alert::decode("kafka:0", &framed, &opts);
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    let a = &d.alerts[0];
    assert_eq!(a.survey, Survey::Lsst);
    assert_close(a.detections[0].value, 1241.0);
    assert_eq!(a.detections[0].band, Band::R);
    assert_eq!(a.detections.len(), 3);
}

#[test]
fn lightcurve_tables_one_object_per_file() {
    let d = decode("lightcurves/RRLyrae/1013184.csv");
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert_eq!(d.alerts.len(), 1);
    let a = &d.alerts[0];
    assert_eq!(a.object_id, "1013184");
    assert_eq!(a.survey, Survey::External);
    assert_eq!(a.detections[0].band, Band::R);
    assert_close(a.detections[0].mjd, 51081.346189);
    assert_close(a.detections[0].value, 17.236);
    assert_eq!(a.detections[0].unit, Unit::Mag);

    let d = decode("lightcurves/from-issues/light-curve-feature-48/1.csv");
    let a = &d.alerts[0];
    assert_eq!(a.object_id, "light-curve-feature-48/1");
    assert_eq!(a.detections[0].unit, Unit::Flux);
    assert_close(a.detections[0].value, 273.80392);
    assert_eq!(a.detections[0].band, Band::Other("V".into()));
}

/// Spark writes the integer columns of nested records as doubles in some Fink exports
/// (`prv_candidates.candid`, `fid`, ... as `double`). Every history row with a magnitude must
/// still be a detection: the same file with those columns cast to double decodes to the same
/// lightcurves (ids compared up to double precision, which cannot hold a 19-digit `candid`).
#[test]
fn fink_parquet_history_with_doubles_for_integers_keeps_its_detections() {
    use arrow::array::RecordBatch;
    use arrow::datatypes::{DataType, Field, Fields, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;

    /// `t` with every integer field inside `prv_candidates` turned into a double.
    fn doubles(t: &DataType, inside: bool) -> DataType {
        match t {
            DataType::Int32 | DataType::Int64 if inside => DataType::Float64,
            DataType::List(f) => DataType::List(Arc::new(field(f, inside))),
            DataType::Struct(fs) => {
                DataType::Struct(fs.iter().map(|f| field(f, inside)).collect::<Fields>())
            }
            other => other.clone(),
        }
    }
    fn field(f: &Field, inside: bool) -> Field {
        let inside = inside || f.name() == "prv_candidates";
        f.clone().with_data_type(doubles(f.data_type(), inside))
    }

    let path = data("fink/tde_ZTF20abfcszi_202008.parquet");
    let file = std::fs::File::open(&path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    let history = schema.field_with_name("prv_candidates").unwrap();
    let cast_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| field(f, false))
            .collect::<Fields>(),
    ));
    assert_ne!(
        cast_schema.field_with_name("prv_candidates").unwrap(),
        history,
        "the history has integer columns to cast"
    );
    let mut bytes = Vec::new();
    {
        let mut writer = ArrowWriter::try_new(&mut bytes, cast_schema.clone(), None).unwrap();
        for b in &batches {
            let columns = b
                .columns()
                .iter()
                .zip(cast_schema.fields())
                .map(|(c, f)| arrow::compute::cast(c, f.data_type()).unwrap())
                .collect();
            writer
                .write(&RecordBatch::try_new(cast_schema.clone(), columns).unwrap())
                .unwrap();
        }
        writer.close().unwrap();
    }

    let original = decode("fink/tde_ZTF20abfcszi_202008.parquet");
    let cast = alert::decode("doubles.parquet", &bytes, &DecodeOptions::default());
    assert!(cast.rejects.is_empty(), "{:?}", cast.rejects);
    assert_eq!(cast.alerts.len(), original.alerts.len());
    let history: usize = original.alerts.iter().map(|a| a.detections.len()).sum();
    assert!(
        history > original.alerts.len(),
        "the file has history detections"
    );
    for (a, b) in original.alerts.iter().zip(&cast.alerts) {
        assert_eq!(a.object_id, b.object_id);
        assert_eq!(
            a.detections.len(),
            b.detections.len(),
            "detections of alert {:?}",
            a.alert_id
        );
        assert_eq!(a.upper_limits.len(), b.upper_limits.len());
        for (x, y) in a.detections.iter().zip(&b.detections) {
            assert_eq!(
                (x.mjd, &x.band, x.value, x.error),
                (y.mjd, &y.band, y.value, y.error)
            );
            let near = |p: Option<i64>, q: Option<i64>| match (p, q) {
                (Some(p), Some(q)) => (p as f64 - q as f64).abs() <= 256.0,
                (p, q) => p == q,
            };
            assert!(
                near(x.source_id, y.source_id),
                "{:?} {:?}",
                x.source_id,
                y.source_id
            );
        }
    }
}

/// Decodes a file of `tests/fuzz-regressions/`: inputs, found by `benches/fuzz.rs` (mutations of
/// the lightcurves of `data/` written as Parquet), on which the parquet crate panics, allocates
/// gigabytes or spins. Each must come back as one Parquet reject of the whole file, naming what
/// is wrong with it.
fn parquet_reader_failure(file: &str, message: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(file);
    let bytes = std::fs::read(&path).unwrap();
    let d = alert::decode(file, &bytes, &DecodeOptions::default());
    assert!(d.alerts.is_empty(), "{file}: {:?}", d.alerts);
    assert_eq!(d.rejects.len(), 1, "{file}: {:?}", d.rejects);
    assert_eq!(d.rejects[0].source, file);
    match &d.rejects[0].error {
        DecodeError::Parquet { detail } => assert!(
            detail.starts_with("malformed file") && detail.contains(message),
            "{file}: {detail}"
        ),
        other => panic!("{file}: {other:?}"),
    }
}

#[test]
fn parquet_negative_column_offset_is_rejected_not_a_panic() {
    parquet_reader_failure(
        "parquet_negative_column_offset.parquet",
        "column chunk at -629 of 45 bytes lies outside the file",
    );
}

/// A page header declaring a 2 GiB page in a 1.7 kB file: the parquet crate allocated and zeroed
/// ~2 GB for it (4.9 s alone). The page-header walk rejects it before the reader sees it.
#[test]
fn parquet_page_declaring_2gb_is_rejected_before_any_allocation() {
    parquet_reader_failure(
        "parquet_page_size_allocates_2gb.parquet",
        "uncompressed bytes",
    );
}

/// A page header holding a Thrift list of billions of elements in 2 kB: the parquet crate
/// skipped it element by element (23 s alone). Rejected from its declared length.
#[test]
fn parquet_page_header_with_a_huge_list_is_rejected_at_once() {
    parquet_reader_failure("parquet_page_header_list_skip_slow.parquet", "elements in");
}

/// A 2 kB file whose footer declares a Thrift list of 194 million elements: the parquet crate
/// skipped it element by element (~1.5 s alone in the dev profile, 23 s on a loaded machine;
/// the 30-minute fuzz run). The footer is walked with the same bounds first.
#[test]
fn parquet_footer_with_a_huge_list_is_rejected_at_once() {
    parquet_reader_failure(
        "parquet_footer_list_skip_slow.parquet",
        "footer: a Thrift container of 194154677 elements in 440 bytes",
    );
}

#[test]
fn parquet_byte_array_page_of_zero_values_is_rejected_not_a_panic() {
    parquet_reader_failure(
        "parquet_byte_array_page_of_zero_values.parquet",
        "divide by zero",
    );
}

#[test]
fn parquet_dictionary_page_missing_is_rejected_not_a_panic() {
    parquet_reader_failure(
        "parquet_dictionary_page_missing.parquet",
        "page 1 at byte 21 of the chunk: a size field of Thrift type 9",
    );
}

#[test]
fn parquet_byte_stream_split_page_too_short_is_rejected_not_a_panic() {
    parquet_reader_failure(
        "parquet_byte_stream_split_page_too_short.parquet",
        "index out of bounds",
    );
}

/// A container whose writer schema encodes a record in zero bytes (here a record without
/// fields) can claim 2^40 records in an empty block: reading them never ended, each one a
/// reject held in memory. Such a container holds no alert and is rejected at its header.
#[test]
fn avro_container_of_zero_byte_records_is_rejected_at_once() {
    fn long(n: i64, out: &mut Vec<u8>) {
        let mut raw = ((n << 1) ^ (n >> 63)) as u64;
        while raw >= 0x80 {
            out.push((raw as u8) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }
    let schema = br#"{"type":"record","name":"alert","fields":[]}"#;
    let sync = [7u8; 16];
    let mut bytes = b"Obj\x01".to_vec();
    long(1, &mut bytes);
    long(11, &mut bytes);
    bytes.extend_from_slice(b"avro.schema");
    long(schema.len() as i64, &mut bytes);
    bytes.extend_from_slice(schema);
    long(0, &mut bytes);
    bytes.extend_from_slice(&sync);
    long(1 << 40, &mut bytes);
    long(0, &mut bytes);
    bytes.extend_from_slice(&sync);

    let d = alert::decode("empty-records.avro", &bytes, &DecodeOptions::default());
    assert!(d.alerts.is_empty());
    assert_eq!(
        d.rejects.len(),
        1,
        "{:?}",
        &d.rejects[..d.rejects.len().min(3)]
    );
    assert_eq!(
        d.rejects[0].error,
        DecodeError::Avro {
            detail: "the writer schema encodes a record in zero bytes: no alert".into()
        }
    );
}
