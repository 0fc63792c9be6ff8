"""hnswlib on the very points and queries of `cargo bench --bench scale` (issue 14, W2).

The scale bench writes its points with ``--save-points FILE`` (raw little-endian float32 rows).
This script builds hnswlib over them with the engine's graph parameters (M 16, ef_construction
200, every thread to build), then runs the scale bench's queries (the points at every
``n // queries``-th row, the point itself left out) on one thread for the same ef values,
and scores recall@10 against exact search (ties by distance counted as found, as `peer.py` does,
and by id, as the scale bench does). It prints one JSON object, comparable row by row
with the scale bench's ``search_one_thread``::

    cargo bench --bench scale -- --vectors /var/tmp/vectors1m.parquet --objects 1000000 \\
        --queries 200 --index usearch --save-points /var/tmp/points1m.f32
    python bench/peer/vectors.py /var/tmp/points1m.f32 --dim 76 --queries 200
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import hnswlib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import HNSW, drop_self, peak_rss_bytes  # noqa: E402

K = 10
EFS = (16, 32, 64, 128)


def exact_truth(vectors: np.ndarray, qids: np.ndarray, k: int):
    """The ids of the exact k nearest of each query (itself left out) and its squared k-th
    distance, in one pass over the points (numpy, in chunks): the truth of every ef's recall."""
    x = vectors.astype(np.float64)
    norms = np.einsum("ij,ij->i", x, x)
    ids = np.empty((len(qids), k), dtype=np.int64)
    chunk = max(1, 2**25 // len(x))
    for lo in range(0, len(qids), chunk):
        q = qids[lo : lo + chunk]
        d = norms[q, None] + norms[None, :] - 2.0 * x[q] @ x.T
        d[np.arange(len(q)), q] = np.inf
        ids[lo : lo + chunk] = np.argpartition(d, k - 1, axis=1)[:, :k]
    return ids, squared_distances(x, qids, ids).max(axis=1)


def squared_distances(x: np.ndarray, qids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Squared L2 from each query to each of its answers, computed directly."""
    return ((x[ids] - x[qids][:, None, :]) ** 2).sum(axis=2)


def recalls(vectors, qids, approx, truth, kth, k):
    """Recall@k by id (as the scale bench counts it) and with answers within the true k-th
    distance counted as found (ties, as `peer.py` counts them)."""
    by_id = np.mean([len(set(a) & set(t)) / k for a, t in zip(approx, truth)])
    d = squared_distances(vectors.astype(np.float64), qids, approx)
    by_distance = (d <= kth[:, None] * (1 + 1e-6) + 1e-9).mean()
    return float(by_distance), float(by_id)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("points", type=Path, help="raw float32 rows (scale --save-points)")
    parser.add_argument("--dim", type=int, required=True, help="dimensions of a row")
    parser.add_argument("--queries", type=int, default=200, help="as the scale bench's --queries")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="build threads")
    args = parser.parse_args(argv)

    flat = np.fromfile(args.points, dtype="<f4")
    if args.dim <= 0 or flat.size % args.dim:
        parser.error(f"{args.points}: {flat.size} floats is not a whole number of {args.dim}-d rows")
    vectors = flat.reshape(-1, args.dim)
    n = len(vectors)
    rss_before = peak_rss_bytes()

    index = hnswlib.Index(space="l2", dim=args.dim)
    index.init_index(max_elements=n, M=HNSW["M"], ef_construction=HNSW["ef_construction"])
    index.set_num_threads(args.threads)
    t0 = time.perf_counter()
    index.add_items(vectors, np.arange(n))
    build_s = time.perf_counter() - t0

    step = max(n // args.queries, 1)
    qids = np.arange(0, n, step)[: args.queries]
    truth, kth = exact_truth(vectors, qids, K)
    sweep = []
    for ef in EFS:
        index.set_ef(ef)
        t0 = time.perf_counter()
        labels, _ = index.knn_query(vectors[qids], k=K + 1, num_threads=1)
        # The same queries again until 3 s have gone, as the engine's sweep does
        # (`workloads --ef-sweep`): one pass is too short for a steady rate.
        asked = len(qids)
        while time.perf_counter() - t0 < 3.0:
            index.knn_query(vectors[qids], k=K + 1, num_threads=1)
            asked += len(qids)
        secs = time.perf_counter() - t0
        approx = drop_self(labels, qids, K)
        by_distance, by_id = recalls(vectors, qids, approx, truth, kth, K)
        sweep.append(
            {
                "ef_search": ef,
                "queries_per_s": asked / secs,
                "recall_at_10": by_distance,
                "recall_at_10_by_id": by_id,
            }
        )
    report = {
        "points": str(args.points),
        "objects": n,
        "dim": args.dim,
        "index": f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}".strip(),
        "graph": {"m": HNSW["M"], "ef_construction": HNSW["ef_construction"]},
        "build_threads": args.threads,
        "inserts_per_s": n / build_s,
        "search_one_thread": sweep,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_rss_bytes_above_points": peak_rss_bytes() - rss_before,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
