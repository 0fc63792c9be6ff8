"""A store's own USearch graph, searched alone (issue 14, W2: where the engine's time goes).

Restores the dump in a store's `index/` folder with USearch's Python package (the crate's
version), writes its points (f16 read back as f32), the queries (every n // 2000-th point)
and their exact 10 nearest (the point itself left out) for `hnsw_count`, then, unless the
third argument is `prep`, per ef: queries/s on one thread (each ef at least 3 s), recall@10 by
id, and the distances computed and nodes visited per query (USearch's own counts)::

    python bench/peer/usearch_sweep.py STORE/index/usearch-*.usearch OUT prep
    python bench/peer/usearch_sweep.py STORE/index/usearch-*.usearch OUT sweep 10 16 24 32
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from usearch.index import Index

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vectors import exact_truth  # noqa: E402

dump, out = sys.argv[1], sys.argv[2]
Q = 2000
idx = Index.restore(dump, view=False)
print(idx, file=sys.stderr)
keys = np.asarray(idx.keys, dtype=np.int64)
order = np.argsort(keys)
keys = keys[order]
pts = np.asarray(idx.get(keys, dtype=np.float32), dtype=np.float32)
n, dim = pts.shape
pts.tofile(f"{out}/points.f32")
qids = np.arange(0, n, n // Q)[:Q].astype(np.int64)
qids.tofile(f"{out}/qids.i64")
t0 = time.time()
truth, _ = exact_truth(pts, qids, 10)
truth = truth.astype(np.int64)
truth.tofile(f"{out}/truth.i64")
print(f"{n} x {dim}, truth in {time.time() - t0:.0f} s", file=sys.stderr)
if len(sys.argv) > 3 and sys.argv[3] == "prep":
    sys.exit(0)
tkeys = keys[truth]
queries = pts[qids]
rows = []
for ef in [int(x) for x in sys.argv[3:] if x != "sweep"] or [10, 12, 16, 20, 24, 32, 48, 64, 96, 128]:
    idx.expansion_search = ef
    found = dist = visited = 0
    for i, q in enumerate(queries):
        m = idx.search(q, 11)
        got = [k for k in m.keys if k != keys[qids[i]]][:10]
        found += len(set(got) & set(tkeys[i])) / 10
        dist += m.computed_distances
        visited += m.visited_members
    done, t0 = 0, time.time()
    while time.time() - t0 < 3:
        idx.search(queries, 11, threads=1)
        done += len(queries)
    rows.append(dict(ef=ef, qps=round(done / (time.time() - t0)), recall=round(found / Q, 4),
                     distances=round(dist / Q, 1), visited=round(visited / Q, 1)))
    print(json.dumps(rows[-1]), flush=True)
