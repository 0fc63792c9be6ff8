#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Python peer of Asterism: ZTF Avro alerts -> light-curve features -> hnswlib, timed.

What a broker developer would write today in Python for Asterism's job, so that the benchmark
can report Asterism/peer ratios on the same packets:

1. decode every alert packet with fastavro (plain ``.avro`` files, or ``.tar.gz``/``.tgz``/
   ``.tar`` archives of them; a file that fails to decode, or a record without ``objectId`` and
   ``candidate``, is a reject: counted, listed with its reason, and skipped);
2. group the detections by ``objectId`` with pandas: ``candidate`` plus ``prv_candidates``
   (entries whose ``magpsf`` is null are upper limits and are skipped), one row per
   (object, band, jd);
3. per band g (fid 1) and r (fid 2), the light-curve evaluators Asterism uses (Fink's anomaly set
   plus EtaE: 27 values) and log10(1 + detections), NaN where a lightcurve is too short; then a
   robust scaler in numpy, as Asterism's: (x - median) / (IQR / 1.349), NaN -> 0 (the median),
   clipped to +-6;
4. an hnswlib index (space 'l2', M = 16, ef_construction = 200, ef = 64) over the vectors;
5. k = 10 queries for min(N, 2000) evenly spaced indexed objects, the object itself excluded,
   on one thread, with recall@10 against exact numpy search;
6. a JSON report on stdout (and in ``--json-out``).

``--threads`` sets the threads of light-curve's ``Extractor.many`` and of the hnswlib build
(default 1, for a single-thread comparison); queries always run on one thread.
"""

import argparse
import json
import resource
import sys
import tarfile
import time
from importlib.metadata import version
from pathlib import Path

import fastavro
import hnswlib
import light_curve as lc
import numpy as np
import pandas as pd

BANDS = {1: "g", 2: "r"}
CLIP = 6.0
K = 10
MAX_QUERIES = 2000
HNSW = {"M": 16, "ef_construction": 200, "ef": 64}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def extractor() -> lc.Extractor:
    """The per-band evaluators of Asterism's embedder (Fink's anomaly set plus EtaE)."""
    return lc.Extractor(
        lc.Mean(),
        lc.WeightedMean(),
        lc.StandardDeviation(),
        lc.Median(),
        lc.Amplitude(),
        lc.BeyondNStd(1.0),
        lc.Cusum(),
        lc.InterPercentileRange(0.1),
        lc.Kurtosis(),
        lc.LinearTrend(),
        lc.LinearFit(),
        lc.MagnitudePercentageRatio(0.4, 0.05),
        lc.MagnitudePercentageRatio(0.2, 0.1),
        lc.MaximumSlope(),
        lc.MedianAbsoluteDeviation(),
        lc.MedianBufferRangePercentage(0.1),
        lc.PercentAmplitude(),
        lc.MeanVariance(),
        lc.AndersonDarlingNormal(),
        lc.ReducedChi2(),
        lc.Skew(),
        lc.StetsonK(),
        lc.EtaE(),
    )


def sources(paths):
    """Yields every Avro file or archive of them under the given paths, folders in sorted order."""
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.name.endswith(".avro") or f.name.endswith(ARCHIVE_SUFFIXES):
                yield f


def avro_files(path: Path):
    """Yields (name, binary file object) for a plain Avro file or each Avro member of an archive."""
    if path.name.endswith(ARCHIVE_SUFFIXES):
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".avro"):
                    yield f"{path}:{member.name}", tar.extractfile(member)
    else:
        with open(path, "rb") as f:
            yield str(path), f


class Decoded:
    """Detections of all decoded packets, column-wise, and the decode counters."""

    def __init__(self):
        self.packets = 0
        self.rejected = []
        self.object_ids = set()
        self.columns = {"objectId": [], "fid": [], "jd": [], "magpsf": [], "sigmapsf": []}

    def add_packet(self, record: dict):
        """Adds one alert's detections; raises KeyError or TypeError, adding nothing, if the
        alert lacks a field."""
        object_id = record["objectId"]
        rows = [
            (d["fid"], d["jd"], d["magpsf"], d["sigmapsf"])
            for d in [record["candidate"], *(record.get("prv_candidates") or [])]
            if d.get("magpsf") is not None and d.get("sigmapsf") is not None  # else upper limit
        ]
        self.packets += 1
        self.object_ids.add(object_id)
        self.columns["objectId"] += [object_id] * len(rows)
        for name, values in zip(("fid", "jd", "magpsf", "sigmapsf"), zip(*rows)):
            self.columns[name] += values


def decode(paths) -> Decoded:
    """Phase 1: every packet through fastavro; malformed files and records are rejects."""
    out = Decoded()
    for path in sources(paths):
        try:
            for name, fileobj in avro_files(path):
                try:
                    records = list(fastavro.reader(fileobj))
                except Exception as e:  # noqa: BLE001 (fastavro raises many types on bad input)
                    out.rejected.append({"source": name, "reason": f"{type(e).__name__}: {e}"})
                    continue
                for i, record in enumerate(records):
                    try:
                        out.add_packet(record)
                    except (KeyError, TypeError) as e:
                        reason = f"not a ZTF alert: {type(e).__name__}: {e}"
                        out.rejected.append({"source": f"{name}#{i}", "reason": reason})
        except (OSError, tarfile.TarError, EOFError) as e:  # an unreadable archive
            out.rejected.append({"source": str(path), "reason": f"{type(e).__name__}: {e}"})
    return out


def lightcurves(decoded: Decoded):
    """Phase 2: pandas table of unique (object, band, jd) detections, sorted for extraction.

    Returns the object ids (index order) and, per band, the (codes, t, m, sigma) arrays sorted by
    object then time.
    """
    objects = np.array(sorted(decoded.object_ids), dtype=object)
    c = decoded.columns
    df = pd.DataFrame(
        {
            "objectId": pd.Series(c["objectId"], dtype=object),
            "fid": np.asarray(c["fid"], dtype=np.int64),
            "jd": np.asarray(c["jd"], dtype=np.float64),
            "magpsf": np.asarray(c["magpsf"], dtype=np.float64),
            "sigmapsf": np.asarray(c["sigmapsf"], dtype=np.float64),
        }
    )
    df = df[np.isfinite(df["magpsf"]) & np.isfinite(df["sigmapsf"]) & (df["sigmapsf"] > 0)]
    df = df.drop_duplicates(["objectId", "fid", "jd"]).sort_values(["objectId", "fid", "jd"])
    df["code"] = pd.Categorical(df["objectId"], categories=objects).codes
    per_band = {}
    for fid in BANDS:
        band = df[df["fid"] == fid]
        per_band[fid] = (
            band["code"].to_numpy(),
            band["jd"].to_numpy(np.float64),
            band["magpsf"].to_numpy(np.float64),
            band["sigmapsf"].to_numpy(np.float64),
        )
    return objects, per_band


def raw_features(n_objects: int, per_band, threads: int):
    """Phase 3a: light-curve features and log counts per band; NaN where undefined."""
    ex = extractor()
    names, blocks = [], []
    for fid, (codes, t, m, sigma) in per_band.items():
        owners, starts, counts = np.unique(codes, return_index=True, return_counts=True)
        lcs = list(
            zip(np.split(t, starts[1:]), np.split(m, starts[1:]), np.split(sigma, starts[1:]))
        )
        block = np.full((n_objects, len(ex.names) + 1), np.nan)
        if lcs:
            block[owners, :-1] = ex.many(lcs, fill_value=np.nan, sorted=True, n_jobs=threads)
        n = np.zeros(n_objects)
        n[owners] = counts
        block[:, -1] = np.log10(1.0 + n)
        blocks.append(block)
        names += [f"{BANDS[fid]}_{name}" for name in ex.names] + [f"log_n_{BANDS[fid]}"]
    raw = np.hstack(blocks)
    raw[~np.isfinite(raw)] = np.nan
    return names, raw


def robust_scale(raw: np.ndarray) -> np.ndarray:
    """Phase 3b: Asterism's scaler in numpy: (x - median) / (IQR / 1.349), NaN -> 0, clip +-6.

    Quantiles are nearest-rank over the finite values of each column; a column with no IQR falls
    back to range / 4, and a constant one to 1.
    """
    scaled = np.zeros(raw.shape, dtype=np.float32)
    for j in range(raw.shape[1]):
        col = raw[:, j]
        finite = np.sort(col[np.isfinite(col)])
        if finite.size == 0:
            continue
        q1, median, q3 = (finite[int((finite.size - 1) * p + 0.5)] for p in (0.25, 0.5, 0.75))
        spread = finite[-1] - finite[0]
        scale = (q3 - q1) / 1.349 if q3 - q1 > 1e-9 else (spread / 4.0 if spread > 1e-9 else 1.0)
        z = np.nan_to_num((col - median) / scale, nan=0.0)
        scaled[:, j] = np.clip(z, -CLIP, CLIP)
    return scaled


def build_index(vectors: np.ndarray, threads: int) -> hnswlib.Index:
    """Phase 4: hnswlib over all vectors, ids = row numbers."""
    index = hnswlib.Index(space="l2", dim=vectors.shape[1])
    index.init_index(
        max_elements=len(vectors), M=HNSW["M"], ef_construction=HNSW["ef_construction"]
    )
    index.set_num_threads(threads)
    index.add_items(vectors, np.arange(len(vectors)))
    index.set_ef(HNSW["ef"])
    return index


def drop_self(labels: np.ndarray, qids: np.ndarray, k: int) -> np.ndarray:
    """The k nearest of k + 1 answers, the query object itself left out."""
    out = np.empty((len(qids), k), dtype=np.int64)
    for row, (found, q) in enumerate(zip(labels, qids)):
        others = found[found != q]
        out[row] = others[:k]
    return out


def exact_recall(vectors: np.ndarray, qids: np.ndarray, approx: np.ndarray, k: int) -> float:
    """Recall@k against exact squared-L2 search (self excluded), by numpy in chunks.

    An answer counts when its exact distance is within the true k-th distance, so objects with
    identical vectors (ties) cannot lower recall.
    """
    x = vectors.astype(np.float64)
    norms = np.einsum("ij,ij->i", x, x)
    chunk = max(1, 2**25 // len(x))
    hits = 0
    for lo in range(0, len(qids), chunk):
        q = qids[lo : lo + chunk]
        d = norms[q, None] + norms[None, :] - 2.0 * x[q] @ x.T
        d[np.arange(len(q)), q] = np.inf
        kth = np.partition(d, k - 1, axis=1)[:, k - 1]
        got = np.take_along_axis(d, approx[lo : lo + chunk], axis=1)
        hits += int((got <= kth[:, None] * (1 + 1e-6) + 1e-9).sum())
    return hits / (len(qids) * k)


def run_queries(index: hnswlib.Index, vectors: np.ndarray, max_queries: int):
    """Phase 5: single-thread k-NN of evenly spaced indexed objects, timed two ways."""
    n = len(vectors)
    k = min(K, n - 1)
    n_queries = min(n, max_queries)
    qids = np.arange(0, n, max(n // n_queries, 1))[:n_queries]

    t0 = time.perf_counter()
    labels, _ = index.knn_query(vectors[qids], k=k + 1, num_threads=1)
    batch_s = time.perf_counter() - t0

    latencies = np.empty(len(qids))
    for i, q in enumerate(qids):
        t0 = time.perf_counter()
        index.knn_query(vectors[q : q + 1], k=k + 1, num_threads=1)
        latencies[i] = time.perf_counter() - t0

    approx = drop_self(labels, qids, k)
    t0 = time.perf_counter()
    recall = exact_recall(vectors, qids, approx, k)
    exact_s = time.perf_counter() - t0
    return {
        "queries": len(qids),
        "k": k,
        "query_s": batch_s,
        "queries_per_s": len(qids) / batch_s,
        "queries_per_s_one_call_each": len(qids) / latencies.sum(),
        "query_latency_p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "query_latency_p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "recall_at_10": recall,
        "exact_s": exact_s,
    }


def peak_rss_bytes() -> int:
    """Peak resident set of this process (ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="Avro files, archives of them, or folders")
    parser.add_argument("--json-out", type=Path, help="also write the JSON report here")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for feature extraction and the index build (default 1: single-thread "
        "comparison); queries always use one thread",
    )
    parser.add_argument(
        "--queries", type=int, default=MAX_QUERIES, help=f"queries to run (default {MAX_QUERIES})"
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.queries < 1:
        parser.error("--threads and --queries must be >= 1")

    rss_at_start = peak_rss_bytes()
    t0 = time.perf_counter()
    decoded = decode(args.paths)
    decode_s = time.perf_counter() - t0
    if len(decoded.object_ids) < 2:
        parser.error(f"need at least 2 objects, decoded {len(decoded.object_ids)}")

    t0 = time.perf_counter()
    objects, per_band = lightcurves(decoded)
    detections = sum(len(codes) for codes, *_ in per_band.values())
    group_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    names, raw = raw_features(len(objects), per_band, args.threads)
    extract_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    vectors = robust_scale(raw)
    scale_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = build_index(vectors, args.threads)
    index_build_s = time.perf_counter() - t0

    queries = run_queries(index, vectors, args.queries)

    n = len(objects)
    features_s = group_s + extract_s + scale_s
    ingest_s = decode_s + features_s + index_build_s
    peak_rss = peak_rss_bytes()
    report = {
        "packets": decoded.packets,
        "rejects": len(decoded.rejected),
        "objects": n,
        "detections_g_r": detections,
        "dim": len(names),
        "decode_s": decode_s,
        "packets_per_s": decoded.packets / decode_s,
        "features_s": features_s,
        "objects_per_s_features": n / features_s,
        "index_build_s": index_build_s,
        "inserts_per_s": n / index_build_s,
        "ingest_s": ingest_s,
        "packets_per_s_end_to_end": decoded.packets / ingest_s,
        **{k: v for k, v in queries.items() if k not in ("query_s", "exact_s")},
        "peak_rss_bytes": peak_rss,
        "bytes_per_object": peak_rss / n,
        "rss_at_start_bytes": rss_at_start,
        "bytes_per_object_above_start": (peak_rss - rss_at_start) / n,
        "phases_s": {
            "decode": decode_s,
            "group": group_s,
            "extract": extract_s,
            "scale": scale_s,
            "index_build": index_build_s,
            "query": queries["query_s"],
            "exact": queries["exact_s"],
        },
        "params": {"threads": args.threads, "k": queries["k"], "space": "l2", **HNSW},
        "versions": {
            "python": sys.version.split()[0],
            **{p: version(p) for p in ("light-curve", "numpy", "pandas", "hnswlib", "fastavro")},
        },
        "rejected": decoded.rejected,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
