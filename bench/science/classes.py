#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 16, "neighbours that share a class": how well Asterism's neighbours predict a class.

One run, from the real data in ``../shared/data``:

1. ingests, with the ``asterism`` binary into a fresh store in a temporary folder, every file
   that holds an alert of an object listed in ``derived/labels.csv`` (the files are named by
   ``derived/ztf_alert_objects_index.csv``);
2. keeps the classes with at least ``--min-class`` (5) labelled objects that the store embedded,
   and runs the engine's own leave-one-out neighbour vote on them (``asterism evaluate --json``
   with a CSV of just those objects, so only they vote);
3. exports the embedding vectors (``asterism export``) and scores a random forest
   (scikit-learn, ``--trees`` 500, ``class_weight='balanced'``, seeded) on exactly those objects
   and classes, by stratified k-fold cross-validation repeated ``--repeats`` times (or
   leave-one-out with ``--cv loo``); beside them, as a diagnostic, an exact 10-NN vote on the
   same vectors;
4. SN Ia vs RR Lyrae, binary, vote vs forest: on the labelled alert objects of those two classes,
   and on the labelled lightcurve tables of ``light-curve-test-data`` (1,145 ZTF BTS SNe Ia and
   242 SDSS Stripe 82 RR Lyrae, a second fresh store);
5. the AUROC of ``asterism anomalies`` (every object ranked) with rare classes (fewer than
   ``--min-class`` embedded objects, plus 'rare transient') as positives and the other labelled
   classes as negatives, beside scikit-learn's IsolationForest on the same exported vectors;
6. prints one JSON object (every figure, and a Markdown per-class table in ``markdown``), then
   the Markdown, and writes the JSON to ``--out``.

Progress goes to stderr. Every random choice is seeded (``--seed``); the engine's ingest,
vote, export and anomaly ranking are deterministic for a fixed file list and order.
"""

import argparse
import csv
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import LeaveOneOut, RepeatedStratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

REPO = Path(__file__).resolve().parents[2]
# The vote's macro-F1 before issue 16 (lightcurve features only; SCIENCE.md).
BASELINE_VOTE_MACRO_F1 = 0.074
RELEASE_BINARY = Path("/var/tmp/asterism-release/release/asterism")
SN_IA = "SN Ia"
RR_LYR = "RR Lyr"
# Always a positive of the anomaly check, whatever its count.
RARE_TRANSIENT = "rare transient"


def log(msg):
    print(f"[classes] {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--asterism", type=Path, default=None,
                   help=f"the binary (default {RELEASE_BINARY}, else `asterism` on PATH)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="the shared data folder (default ../shared/data from the repository)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON object here")
    p.add_argument("--min-class", type=int, default=5,
                   help="least embedded labelled objects a class needs to be scored (5)")
    p.add_argument("--cv", choices=["kfold", "loo"], default="kfold",
                   help="the forest's cross-validation: repeated stratified k-fold (default) "
                        "or leave-one-out (about 95 fits of --trees trees: slow on 2 cores)")
    p.add_argument("--folds", type=int, default=5, help="k of the k-fold (5)")
    p.add_argument("--repeats", type=int, default=5, help="repeats of the k-fold (5)")
    p.add_argument("--trees", type=int, default=500, help="random-forest trees (500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the forests and the folds (0)")
    p.add_argument("--jobs", type=int, default=2, help="scikit-learn worker threads (2)")
    p.add_argument("--keep", type=Path, default=None,
                   help="build the stores under this folder and keep them (default: a "
                        "temporary folder, removed)")
    return p.parse_args()


def find_binary(arg):
    if arg is not None:
        return arg.resolve()
    if RELEASE_BINARY.exists():
        return RELEASE_BINARY
    on_path = shutil.which("asterism")
    if on_path:
        return Path(on_path)
    sys.exit("no asterism binary: pass --asterism PATH")


class Asterism:
    """Runs the binary; waits (up to 3 minutes) if it is missing, as while it is rebuilt."""

    def __init__(self, path):
        self.path = path

    def run(self, *args, json_out=False):
        for _ in range(18):
            if self.path.exists():
                break
            log(f"{self.path} is missing (being rebuilt?); waiting 10 s")
            time.sleep(10)
        cmd = [str(self.path), *map(str, args)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
        return json.loads(r.stdout) if json_out else r.stdout

    def identity(self):
        h = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {
            "path": str(self.path),
            "version": self.run("--version").strip(),
            "sha256": h,
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                   time.gmtime(self.path.stat().st_mtime)),
        }


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_labels(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["objectId", "class"])
        w.writerows(rows)


def labelled_files(data):
    """The labels, and the sorted files (archives whole) holding their objects' alerts."""
    labels = {r["objectId"]: r["class"] for r in read_csv(data / "derived" / "labels.csv")}
    files, unlocated = set(), []
    index = {r["objectId"]: r for r in read_csv(data / "derived" / "ztf_alert_objects_index.csv")}
    for oid in labels:
        row = index.get(oid)
        if row is None or not row["files"]:
            unlocated.append(oid)
            continue
        for f in row["files"].split("|"):
            # "archive.tar.gz:member.avro" names a member: ingest the whole archive.
            files.add(f.split(":", 1)[0] if ".tar" in f.split(":", 1)[0] else f)
    return labels, sorted(files), sorted(unlocated)


def export_vectors(asterism, db, out):
    asterism.run("export", "--db", db, "--out", out)
    t = pq.read_table(out).to_pydict()
    vectors = {}
    for oid, v in zip(t["object_id"], t["embedding"]):
        if v is not None and len(v) > 0:
            vectors[oid] = np.asarray(v, dtype=np.float64)
    n_det = dict(zip(t["object_id"], t["n_detections"]))
    return vectors, n_det, len(t["object_id"])


def figures_from_confusion(confusion, classes):
    """Per-class precision/recall/F1 recomputed from the engine's confusion matrix."""
    out = {}
    for c in classes:
        tp = confusion.get(c, {}).get(c, 0)
        support = sum(confusion.get(c, {}).values())
        predicted = sum(row.get(c, 0) for row in confusion.values())
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        out[c] = {"support": support, "precision": p, "recall": r,
                  "f1": 2 * p * r / (p + r) if p + r else 0.0}
    return out


AGES = [3, 5, 10, 20, 30]


def early_sn_ia(asterism, db, rows, path):
    """SN Ia purity (precision) and completeness (recall) when every object is compared as it
    was DAYS after its own first detection (`evaluate --at-age`), for each of AGES: the
    store's metric by leave-one-out, and a metric learned on training folds (k-fold)."""
    write_labels(path, rows)
    out = []
    for age in AGES:
        row = {"age_days": age}
        for name, extra in (("vote", []), ("learned", ["--learned-metric"])):
            e = asterism.run("evaluate", "--db", db, "--labels", path, "--json",
                             "--at-age", str(age), *extra, json_out=True)
            ia = e["per_class"].get(SN_IA, {})
            row[name] = {"purity": ia.get("precision", 0.0),
                         "completeness": ia.get("recall", 0.0),
                         "macro_f1": e["macro_f1"], "method": e["method"]}
        out.append(row)
    return out


def vote(asterism, db, rows, path, classes, learned=False):
    """The engine's vote over `rows` ((id, class)), as `evaluate --json` gives it: leave-one-out
    over the index, or with `learned` the k-fold evaluation of a metric learned on the
    training folds (`evaluate --learned-metric`)."""
    write_labels(path, rows)
    extra = ["--learned-metric"] if learned else []
    e = asterism.run("evaluate", "--db", db, "--labels", path, "--json", *extra, json_out=True)
    got = sorted(e["per_class"])
    if got != sorted(classes):
        log(f"evaluate renamed classes: sent {sorted(classes)}, got {got}")
    mine = figures_from_confusion(e["confusion"], got)
    worst = max(abs(mine[c][k] - e["per_class"][c][k])
                for c in got for k in ("precision", "recall", "f1"))
    predicted = sorted({p for row in e["confusion"].values() for p in row} - set(got))
    return {
        "method": e["method"],
        "n": e["n"],
        "missing": e["missing"],
        "accuracy": e["accuracy"],
        "macro_f1": e["macro_f1"],
        "baseline_class": e["baseline_class"],
        "baseline_accuracy": e["baseline_accuracy"],
        "baseline_macro_f1": e["baseline_macro_f1"],
        "per_class": e["per_class"],
        "confusion": e["confusion"],
        "predictions_outside_classes": predicted,
        "confusion_recheck_max_abs_diff": worst,
    }


def forest(X, y, classes, args, cv):
    """Out-of-fold random-forest predictions: per-class figures and macro-F1, mean over repeats."""
    y = np.asarray(y)
    if cv == "loo":
        splits = [list(LeaveOneOut().split(X, y))]
        scheme = "leave-one-out"
    else:
        rskf = RepeatedStratifiedKFold(n_splits=args.folds, n_repeats=args.repeats,
                                       random_state=args.seed)
        all_splits = list(rskf.split(X, y))
        splits = [all_splits[i:i + args.folds] for i in range(0, len(all_splits), args.folds)]
        scheme = f"stratified {args.folds}-fold, {args.repeats} repeats (seed {args.seed})"
    runs = []
    for r, repeat in enumerate(splits):
        pred = np.empty(len(y), dtype=object)
        for k, (train, test) in enumerate(repeat):
            rf = RandomForestClassifier(n_estimators=args.trees, class_weight="balanced",
                                        random_state=args.seed + 1000 * r + k,
                                        n_jobs=args.jobs)
            rf.fit(X[train], y[train])
            pred[test] = rf.predict(X[test])
        p, rc, f, s = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
        runs.append({
            "accuracy": accuracy_score(y, pred),
            "macro_f1": float(np.mean(f)),
            "per_class": {c: {"support": int(s[i]), "precision": float(p[i]),
                              "recall": float(rc[i]), "f1": float(f[i])}
                          for i, c in enumerate(classes)},
        })
    macro = [x["macro_f1"] for x in runs]
    return {
        "cv": scheme,
        "trees": args.trees,
        "class_weight": "balanced",
        "n": int(len(y)),
        "accuracy": float(np.mean([x["accuracy"] for x in runs])),
        "macro_f1": float(np.mean(macro)),
        "macro_f1_std_over_repeats": float(np.std(macro)),
        "macro_f1_per_repeat": macro,
        "per_class": {c: {"support": runs[0]["per_class"][c]["support"],
                          **{k: float(np.mean([x["per_class"][c][k] for x in runs]))
                             for k in ("precision", "recall", "f1")}}
                      for c in classes},
    }


def exact_knn(X, y, classes, k):
    """Diagnostic: leave-one-out exact k-NN (Euclidean, 1/d weights) on the exported vectors,
    to tell the embedding's limits from the engine's approximate search and vote."""
    knn = KNeighborsClassifier(n_neighbors=k, weights="distance", algorithm="brute")
    pred = cross_val_predict(knn, X, np.asarray(y), cv=LeaveOneOut())
    f = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)[2]
    return {"k": k, "cv": "leave-one-out", "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(np.mean(f)),
            "f1_per_class": {c: float(f[i]) for i, c in enumerate(classes)}}


def binary(asterism, db, ids, truth, vectors, work, name, args):
    classes = [SN_IA, RR_LYR]
    rows = [(i, truth[i]) for i in ids if truth[i] in classes]
    v = vote(asterism, db, rows, work / f"{name}.csv", classes)
    vl = vote(asterism, db, rows, work / f"{name}.csv", classes, learned=True)
    X = np.stack([vectors[i] for i, _ in rows])
    y = [c for _, c in rows]
    rf = forest(X, y, classes, args, "kfold")
    return {
        "counts": {c: sum(1 for _, k in rows if k == c) for c in classes},
        "vote": {k: v[k] for k in ("n", "missing", "accuracy", "macro_f1", "per_class",
                                   "confusion", "baseline_accuracy", "baseline_macro_f1")},
        "vote_learned": {k: vl[k] for k in ("method", "accuracy", "macro_f1", "per_class")},
        "forest": {k: rf[k] for k in ("cv", "accuracy", "macro_f1",
                                      "macro_f1_std_over_repeats", "per_class")},
        "vote_macro_f1_at_least_0_99": v["macro_f1"] >= 0.99,
        "vote_learned_macro_f1_at_least_0_99": vl["macro_f1"] >= 0.99,
        "forest_macro_f1_at_least_0_99": rf["macro_f1"] >= 0.99,
    }


def anomaly_auroc(asterism, db, n_objects, vectors, labels, rare, common, args):
    top = min(n_objects, 1000)
    ranked = asterism.run("anomalies", "--db", db, "--top", top, "--json", json_out=True)
    by_id = {a["object_id"]: a for a in ranked}
    ids = [i for i in sorted(labels) if i in vectors and i in by_id
           and (labels[i] in rare or labels[i] in common)]
    y = np.array([1 if labels[i] in rare else 0 for i in ids])
    everyone = sorted(vectors)
    iso = IsolationForest(n_estimators=args.trees, random_state=args.seed, n_jobs=args.jobs)
    iso.fit(np.stack([vectors[i] for i in everyone]))
    iso_score = dict(zip(everyone, -iso.score_samples(np.stack([vectors[i] for i in everyone]))))

    def auc(scores):
        return float(roc_auc_score(y, scores))

    return {
        "positives": int(y.sum()),
        "negatives": int(len(y) - y.sum()),
        "positive_classes": sorted(rare),
        "negative_classes": sorted(common),
        "objects_ranked": len(ranked),
        "objects_in_store": n_objects,
        "labelled_missing_from_ranking": sorted(
            i for i in labels if i in vectors and i not in by_id),
        "auroc_asterism_score": auc([by_id[i]["score"] for i in ids]),
        "auroc_asterism_lof": auc([by_id[i]["lof"] for i in ids]),
        "auroc_asterism_isolation": auc([by_id[i]["isolation"] for i in ids]),
        "auroc_sklearn_isolation_forest": auc([iso_score[i] for i in ids]),
        "sklearn_isolation_forest": {"n_estimators": args.trees, "random_state": args.seed,
                                     "fit_on": f"all {len(everyone)} exported vectors"},
    }


def markdown(result):
    v, vl, rf = result["vote"], result["vote_learned"], result["forest"]
    lines = [
        "| class | n | vote P | vote R | vote F1 | learned P | learned R | learned F1 | "
        "RF P | RF R | RF F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["classes"]:
        a, m, b = v["per_class"][c], vl["per_class"][c], rf["per_class"][c]
        lines.append(f"| {c} | {a['support']} | {a['precision']:.3f} | {a['recall']:.3f} | "
                     f"{a['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                     f"{m['f1']:.3f} | {b['precision']:.3f} | {b['recall']:.3f} | "
                     f"{b['f1']:.3f} |")
    lines.append(f"| **macro-F1** | {v['n']} | | | **{v['macro_f1']:.3f}** | | | "
                 f"**{vl['macro_f1']:.3f}** | | | "
                 f"**{rf['macro_f1']:.3f}** (±{rf['macro_f1_std_over_repeats']:.3f}) |")
    lines.append(f"| accuracy | | | | {v['accuracy']:.3f} | | | {vl['accuracy']:.3f} | | | "
                 f"{rf['accuracy']:.3f} |")
    k = result["exact_knn_diagnostic"]
    lines.append(f"| exact {k['k']}-NN on the exported vectors (diagnostic) | | | | "
                 f"macro-F1 {k['macro_f1']:.3f}, acc {k['accuracy']:.3f} | | | | | | |")
    lines.append(f"| majority baseline ({v['baseline_class']}) | | | | "
                 f"acc {v['baseline_accuracy']:.3f}, macro-F1 {v['baseline_macro_f1']:.3f} "
                 f"| | | | | | |")
    t = result["targets"]
    lines += ["", f"Vote: {v['method']}; learned: {vl['method']}; forest: {rf['cv']}.",
              f"Learned vote / forest = {t['vote_learned_over_forest']:.2f} "
              f"(target >= 0.85: {t['vote_learned_at_least_0_85_forest']}); learned vote >= 2 x "
              f"baseline {t['baseline_vote_macro_f1']}: {t['vote_learned_doubles_baseline']}.", "",
              "| SN Ia vs RR Lyr | n (Ia / RRL) | vote acc | vote macro-F1 | learned macro-F1 | "
              "RF acc | RF macro-F1 |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, b in result["sn_ia_vs_rr_lyr"].items():
        cnt = b["counts"]
        lines.append(f"| {name} | {cnt[SN_IA]} / {cnt[RR_LYR]} | {b['vote']['accuracy']:.3f} | "
                     f"{b['vote']['macro_f1']:.3f} | {b['vote_learned']['macro_f1']:.3f} | "
                     f"{b['forest']['accuracy']:.3f} | {b['forest']['macro_f1']:.3f} |")
    lines += ["", "| SN Ia at age (days after first detection) | " +
              " | ".join(f"{a} d" for a in AGES) + " |", "|---|" + "---:|" * len(AGES)]
    for name, table in result["early_sn_ia"].items():
        for kind in ("vote", "learned"):
            for fig in ("purity", "completeness"):
                lines.append(f"| {name}: {kind} {fig} | " +
                             " | ".join(f"{r[kind][fig]:.2f}" for r in table) + " |")
    a = result["anomalies"]
    lines += ["", f"| anomaly ranking ({a['positives']} rare vs {a['negatives']} common) "
              "| AUROC |", "|---|---:|",
              f"| asterism anomalies `score` | {a['auroc_asterism_score']:.3f} |",
              f"| asterism `lof` alone | {a['auroc_asterism_lof']:.3f} |",
              f"| asterism `isolation` alone | {a['auroc_asterism_isolation']:.3f} |",
              f"| scikit-learn IsolationForest | {a['auroc_sklearn_isolation_forest']:.3f} |"]
    return "\n".join(lines)


def main():
    args = parse_args()
    t0 = time.time()
    timings = {}
    asterism = Asterism(find_binary(args.asterism))
    data = args.data.resolve()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep.resolve()
        tmp = None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="asterism-classes-")
        work = Path(tmp.name)

    # 1. the store of the labelled alert objects.
    labels, files, unlocated = labelled_files(data)
    db = work / "alerts.db"
    if db.exists():
        shutil.rmtree(db)
    log(f"ingesting {len(files)} files holding {len(labels)} labelled objects into {db}")
    t = time.time()
    ingest = asterism.run("ingest", "--db", db, "--json", *[data / f for f in files],
                          json_out=True)
    timings["ingest_alerts"] = time.time() - t
    vectors, n_det, n_objects = export_vectors(asterism, db, work / "alerts.parquet")
    not_ingested = sorted(i for i in labels if i not in n_det)
    not_embedded = sorted(i for i in labels if i in n_det and i not in vectors)

    # 2. the classes scored and the engine's vote.
    counts = {}
    for i, c in labels.items():
        if i in vectors:
            counts[c] = counts.get(c, 0) + 1
    raw_counts = {}
    for c in labels.values():
        raw_counts[c] = raw_counts.get(c, 0) + 1
    classes = sorted(c for c, n in counts.items() if n >= args.min_class)
    dropped = {c: n for c, n in sorted(counts.items()) if n < args.min_class}
    rows = [(i, labels[i]) for i in sorted(labels) if i in vectors and labels[i] in classes]
    log(f"{len(rows)} objects in {len(classes)} classes: the engine's leave-one-out vote")
    t = time.time()
    v = vote(asterism, db, rows, work / "scored.csv", classes)
    vl = vote(asterism, db, rows, work / "scored.csv", classes, learned=True)
    timings["vote"] = time.time() - t

    # 3. the forest on the exported vectors of the same objects.
    log(f"random forest ({args.trees} trees, {args.cv})")
    t = time.time()
    X = np.stack([vectors[i] for i, _ in rows])
    rf = forest(X, [c for _, c in rows], classes, args, args.cv)
    timings["forest"] = time.time() - t
    knn = exact_knn(X, [c for _, c in rows], classes, 10)

    # 4. SN Ia vs RR Lyr: the alert objects, then the lightcurve tables.
    log("SN Ia vs RR Lyr")
    t = time.time()
    sep = {"alert objects (derived/labels.csv)":
           binary(asterism, db, sorted(labels), labels, vectors, work, "alerts_binary", args)}
    lc = data / "light-curve-test-data"
    lc_dirs = {SN_IA: lc / "SNIa" / "light-curves", RR_LYR: lc / "RRLyrae" / "light-curves"}
    lc_truth = {p.stem: c for c, d in lc_dirs.items() for p in sorted(d.glob("*.csv"))}
    lc_db = work / "lightcurves.db"
    if lc_db.exists():
        shutil.rmtree(lc_db)
    lc_ingest = asterism.run("ingest", "--db", lc_db, "--json", *lc_dirs.values(), json_out=True)
    lc_vectors, _, lc_objects = export_vectors(asterism, lc_db, work / "lightcurves.parquet")
    lc_ids = sorted(i for i in lc_truth if i in lc_vectors)
    sep["lightcurve tables (light-curve-test-data)"] = binary(
        asterism, lc_db, lc_ids, lc_truth, lc_vectors, work, "lightcurves_binary", args)
    sep["lightcurve tables (light-curve-test-data)"]["not_embedded"] = sorted(
        set(lc_truth) - set(lc_ids))
    timings["sn_ia_vs_rr_lyr"] = time.time() - t

    # 4b. early SN Ia: every object as it was 3..30 days after its first detection.
    log("early SN Ia (--at-age)")
    t = time.time()
    early = {
        "alert objects, 9 classes": early_sn_ia(asterism, db, rows, work / "early.csv"),
        "lightcurve tables, SN Ia vs RR Lyr": early_sn_ia(
            asterism, lc_db, [(i, lc_truth[i]) for i in lc_ids], work / "early_lc.csv"),
    }
    timings["early_sn_ia"] = time.time() - t

    # 5. anomalies: rare classes against common ones.
    log("anomaly AUROC")
    t = time.time()
    rare = set(dropped) | ({RARE_TRANSIENT} if RARE_TRANSIENT in counts else set())
    common = set(classes) - rare
    anomalies = anomaly_auroc(asterism, db, n_objects, vectors, labels, rare, common, args)
    timings["anomalies"] = time.time() - t
    timings["total"] = time.time() - t0

    det = [n_det[i] for i, _ in rows]
    result = {
        "issue": 16,
        "asterism": asterism.identity(),
        "data": str(data),
        "seed": args.seed,
        "store": {
            "files": files,
            "ingest": {k: ingest[k] for k in ("alerts_read", "alerts_rejected",
                                              "alerts_duplicate", "objects_new",
                                              "detections_added")},
            "rejects": ingest.get("rejects", []),
            "objects": n_objects,
            "objects_embedded": len(vectors),
            "labelled": len(labels),
            "labelled_unlocated_in_index": unlocated,
            "labelled_not_ingested": not_ingested,
            "labelled_not_embedded": not_embedded,
            "scored_detections_min_median_max": [int(min(det)), float(np.median(det)),
                                                 int(max(det))],
        },
        "label_counts_csv": dict(sorted(raw_counts.items())),
        "label_counts_embedded": dict(sorted(counts.items())),
        "min_class": args.min_class,
        "classes": classes,
        "classes_dropped": dropped,
        "vote": v,
        "vote_learned": vl,
        "forest": rf,
        "targets": {
            "baseline_vote_macro_f1": BASELINE_VOTE_MACRO_F1,
            "vote_learned_doubles_baseline": vl["macro_f1"] >= 2 * BASELINE_VOTE_MACRO_F1,
            "vote_learned_over_forest": vl["macro_f1"] / rf["macro_f1"] if rf["macro_f1"] else None,
            "vote_learned_at_least_0_85_forest": vl["macro_f1"] >= 0.85 * rf["macro_f1"],
        },
        "exact_knn_diagnostic": knn,
        "sn_ia_vs_rr_lyr": sep,
        "early_sn_ia": early,
        "lightcurve_store": {"ingest": {k: lc_ingest[k] for k in ("alerts_read",
                                                                  "alerts_rejected",
                                                                  "objects_new")},
                             "objects": lc_objects},
        "anomalies": anomalies,
        "timings_s": {k: round(x, 2) for k, x in timings.items()},
    }
    result["markdown"] = markdown(result)
    text = json.dumps(result, indent=2)
    print(text)
    print()
    print(result["markdown"])
    if args.out:
        args.out.write_text(text + "\n")
        log(f"wrote {args.out}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
