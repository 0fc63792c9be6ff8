"""Large single-file inputs for `asterism ingest`, to measure its memory on them.

    container: one Avro object container of every record of a tar of one-packet ZTF containers
               (as `asterism generate` writes them), repeated REPS times; each repetition
               after the first gets new object ids (the sixth character a -> b, c, ...) and
               candids (+ rep * 10^12), so that every record is a new alert.
    parquet:   one Parquet file of Fink alert rows repeated REPS times, REPS_PER_GROUP
               repetitions to a row group, each row with a new object id and candid.

    python make_inputs.py container /var/tmp/gen-big/alerts-000000.tar OUT.avro --reps 10
    python make_inputs.py parquet ../shared/data/fink-science/alerts/alerts.parquet OUT.parquet \
        --reps 150 --reps-per-group 15
"""

import argparse
import io
import os
import tarfile

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

OFFSET = 10**12


def container(source, out, reps):
    def packets():
        with tarfile.open(source, "r|") as tar:
            for member in tar:
                if member.isfile():
                    yield fastavro.reader(io.BytesIO(tar.extractfile(member).read()))

    schema = fastavro.parse_schema(next(packets()).writer_schema)

    def records():
        for rep in range(reps):
            for packet in packets():
                for rec in packet:
                    if rep:
                        oid = rec["objectId"]
                        assert oid.startswith("ZTF") and oid[5] == "a", oid
                        rec["objectId"] = oid[:5] + chr(ord("a") + rep) + oid[6:]
                        rec["candid"] += rep * OFFSET
                        rec["candidate"]["candid"] += rep * OFFSET
                        for p in rec.get("prv_candidates") or []:
                            if p.get("candid") is not None:
                                p["candid"] += rep * OFFSET
                    yield rec

    with open(out, "wb") as f:
        fastavro.writer(f, schema, records(), codec="null")


def parquet(source, out, reps, reps_per_group):
    table = pq.read_table(source).replace_schema_metadata(None)
    n = table.num_rows
    oids = table.column("objectId").to_pylist()

    def base26(k, width=7):
        s = ""
        for _ in range(width):
            s = chr(97 + k % 26) + s
            k //= 26
        return s

    def shifted(arr, off):
        return pc.add(arr, pa.scalar(off, pa.int64()))

    def with_field(struct, name, values):
        kids = [values if f.name == name else struct.field(f.name) for f in struct.type]
        mask = struct.is_null() if struct.null_count else None
        return pa.StructArray.from_arrays(kids, fields=list(struct.type), mask=mask)

    def repetition(rep):
        off = rep * OFFSET
        cand = table.column("candidate").combine_chunks()
        history = table.column("prv_candidates").combine_chunks()
        inner = with_field(history.values, "candid", shifted(history.values.field("candid"), off))
        mask = history.is_null() if history.null_count else None
        columns = {
            "objectId": pa.array(
                ["ZTF" + o[3:5] + base26(rep * n + i) for i, o in enumerate(oids)], pa.string()
            ),
            "candid": shifted(table.column("candid").combine_chunks(), off),
            "candidate": with_field(cand, "candid", shifted(cand.field("candid"), off)),
            "prv_candidates": pa.ListArray.from_arrays(
                history.offsets, inner, type=history.type, mask=mask
            ),
        }
        t = table
        for name, arr in columns.items():
            t = t.set_column(t.column_names.index(name), t.schema.field(name), arr)
        return t

    # Dictionary encoding off for the image cutouts only, as Fink writes them.
    dictionary = [c for c in table.column_names if not c.startswith("cutout")]
    writer = pq.ParquetWriter(out, table.schema, compression="snappy", use_dictionary=dictionary)
    for start in range(0, reps, reps_per_group):
        group = pa.concat_tables(
            [repetition(r) for r in range(start, min(reps, start + reps_per_group))]
        )
        writer.write_table(group, row_group_size=group.num_rows)
    writer.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("kind", choices=["container", "parquet"])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--reps-per-group", type=int, default=15)
    args = ap.parse_args()
    if args.kind == "container":
        container(args.source, args.out, args.reps)
    else:
        parquet(args.source, args.out, args.reps, args.reps_per_group)
    print(args.out, os.path.getsize(args.out))


if __name__ == "__main__":
    main()
