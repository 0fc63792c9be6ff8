#!/usr/bin/env python3
"""One space for ZTF and Rubin (issue 16): twins observed by both surveys.

The same generated objects (real SN Ia and RR Lyrae lightcurves of `data/lightcurves`,
augmented with one seed) are written once as ZTF packets and once as Rubin packets with
``asterism generate --backfill --cadence survey`` (each survey's own cadence, bands, depth and
difference fluxes; ``--cadence base`` for the old, easy setting that reuses the real cadence
for both), ingested into one store, and measured:

1. **twins**: how many ZTF versions find their Rubin twin among their 10 nearest neighbours,
   by the engine's ``similar`` (its index) and by an exact 10-NN on the exported vectors;
2. **class vote across surveys**: with the ZTF versions labelled (the class of the real
   lightcurve each was made from), the engine's leave-one-out ``evaluate`` on the ZTF versions,
   and ``classify`` of every Rubin twin (voted by the labelled ZTF objects nearest to it):
   does the vote keep its macro-F1 on the Rubin twins?
3. **the flux and curves presets** (feature version 4): the same two measures by the engine's
   ``similar --features flux`` and ``classify --features flux`` (the survey-blind flux group,
   scanned exactly), and by ``--features curves`` (the flux scan's 300 nearest, 100 for
   ``classify``, ranked by how
   well their lightcurves fit, ``science::curves``);
4. **the flux-space prototype** the group was made from: its eleven features computed here in
   Python from ``asterism object --json``, on the points that both surveys could detect
   (brighter than ZTF's r-band depth, 20.6 mag), and the same twin and vote measures in that
   space, beside the same measures (Python's) on the engine's exported vectors;
5. **fitted models**: the same eleven features with a Bazin fit's amplitude, rise and fall
   times (red bands, common depth) beside them, whose parameters should not depend on how a
   survey sampled the lightcurve.
6. **a Gaussian process over time and wavelength** (as Boone's Avocado does for PLAsTiCC):
   fifteen features read off each object's GP mean on a fixed grid of days in the g, r and i
   bands, beside the eleven flux features; and every space's twins counted among the 10
   nearest objects of the other survey only.

    /var/tmp/science-venv/bin/python bench/science/surveys.py --out /tmp/surveys.json
"""

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import warnings

import numpy as np
import pyarrow.parquet as pq
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import curve_fit, minimize
from sklearn.metrics import f1_score

REPO = Path(__file__).resolve().parents[2]
RELEASE_BINARY = Path("/var/tmp/asterism-release/release/asterism")


def log(msg):
    print(f"[surveys] {msg}", file=sys.stderr, flush=True)


def run(binary, *args, json_out=False):
    r = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"asterism {' '.join(map(str, args))} failed:\n{r.stderr}")
    return json.loads(r.stdout) if json_out else r.stdout


NJY_ZERO_POINT = 31.4
# The common depth: ZTF's r-band 5-sigma depth, as `asterism generate` observes.
COMMON_DEPTH_NJY = 10 ** ((NJY_ZERO_POINT - 20.6) / 2.5)
BAND_GROUPS = ({"u", "g"}, {"r", "i", "z", "y"})


def signed_flux(d):
    """A detection's difference flux in nJy, signed (ZTF: from the difference magnitude and
    `isdiffpos`; Rubin: as sent)."""
    if d["unit"] == "flux_njy":
        return d["value"]
    f = 10 ** ((NJY_ZERO_POINT - d["value"]) / 2.5)
    return -f if d.get("isdiffpos") is False else f


def flux_features(detections):
    """Eleven survey-blind features: of all bands together, the log peak and median |flux|,
    the negative share, the log time span and the spread of log |flux|; of the blue (u, g) and
    red (r, i, z, y) bands, the log peak and median |flux| and the negative share. Only points
    brighter than the common depth count (all points if fewer than one is)."""
    pts = [(d["mjd"], signed_flux(d), d["band"]) for d in detections]
    bright = [p for p in pts if abs(p[1]) >= COMMON_DEPTH_NJY] or pts
    t = np.array([p[0] for p in bright])
    f = np.array([p[1] for p in bright])
    a = np.log10(np.abs(f) + 1e-3)
    out = [a.max(), np.median(a), float((f < 0).mean()), np.log10(1 + np.ptp(t)), a.std()]
    for bands in BAND_GROUPS:
        g = np.array([p[1] for p in pts if p[2] in bands and abs(p[1]) >= COMMON_DEPTH_NJY])
        if len(g) == 0:
            out += [np.nan] * 3
            continue
        ga = np.log10(np.abs(g))
        out += [ga.max(), np.median(ga), float((g < 0).mean())]
    return out


def bazin(t, amplitude, t0, rise, fall):
    """Bazin et al. (2009)'s transient model."""
    return amplitude * np.exp(-(t - t0) / fall) / (1 + np.exp(-(t - t0) / rise))


def bazin_features(detections):
    """A fitted model's parameters, which should not depend on the sampling: a Bazin fit to
    the red bands' (r, i, z, y) difference fluxes brighter than the common depth; the log of
    its amplitude, rise and fall times (NaN with fewer than four such points, or no fit)."""
    pts = [(d["mjd"], signed_flux(d)) for d in detections
           if d["band"] in BAND_GROUPS[1] and abs(signed_flux(d)) >= COMMON_DEPTH_NJY]
    if len(pts) < 4:
        return [np.nan] * 3
    t = np.array([p[0] for p in pts])
    f = np.array([p[1] for p in pts])
    peak = t[np.argmax(f)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(bazin, t, f, p0=[2 * f.max(), peak - 5, 3, 20], maxfev=4000,
                             bounds=([0, t.min() - 60, 0.3, 1],
                                     [50 * max(f.max(), 1), t.max() + 30, 60, 300]))
    except (RuntimeError, ValueError):
        return [np.nan] * 3
    return [np.log10(p[0]), np.log10(p[2]), np.log10(p[3])]


# Central wavelengths (nm) of each survey's bands, and the bands the GP is read in.
WAVELENGTH = {"ztf": {"g": 480, "r": 640, "i": 790},
              "lsst": {"u": 367, "g": 482, "r": 626, "i": 767, "z": 900, "y": 970}}
GP_BANDS = (482.0, 626.0, 767.0)
# The wavelength scale of the kernel (nm): 200 did better here than Avocado's 600.
GP_WAVELENGTH_SCALE = 200.0


def matern32(t1, w1, t2, w2, amplitude, time_scale):
    r = np.hypot((t1[:, None] - t2[None, :]) / time_scale,
                 (w1[:, None] - w2[None, :]) / GP_WAVELENGTH_SCALE)
    return amplitude ** 2 * (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)


def gp_features(detections, survey):
    """Fifteen features of a Gaussian process fitted to every detection's signed flux over
    (days, wavelength): Matern 3/2, its amplitude and time scale by maximum likelihood, noise
    5% of the flux plus a fifth of the common depth. Read off its mean on a half-day grid in
    g, r and i: the log peaks in the three bands; in r, the days from the peak back to half of
    it and on to a half and a fifth, the flux 10, 20 and 30 days after the peak over the peak,
    the log integral, the minimum and the spread over the peak and the share of days above
    half of it; and the fit's log time scale and amplitude. NaN with fewer than three points."""
    wl = WAVELENGTH[survey]
    pts = [(d["mjd"], wl[d["band"]], signed_flux(d)) for d in detections if d["band"] in wl]
    if len(pts) < 3:
        return [np.nan] * 15
    t, w, f = (np.array(c, dtype=np.float64) for c in zip(*pts))
    t = t - t.min()
    scale = np.abs(f).max()
    y = f / scale
    noise = np.diag((0.05 * y) ** 2 + (COMMON_DEPTH_NJY / 5 / scale) ** 2)

    def gram(p):
        return matern32(t, w, t, w, *np.exp(p)) + noise

    def nll(p):
        try:
            c = cho_factor(gram(p), lower=True)
        except np.linalg.LinAlgError:
            return 1e25
        return 0.5 * y @ cho_solve(c, y) + np.log(np.diag(c[0])).sum()

    bounds = [(np.log(1e-3), np.log(100.0)), (np.log(0.5), np.log(300.0))]
    fits = [minimize(nll, [np.log(max(y.std(), 0.1)), np.log(days)], method="L-BFGS-B",
                     bounds=bounds) for days in (20.0, 3.0)]
    best = min(fits, key=lambda r: r.fun).x
    amplitude, time_scale = np.exp(best)
    alpha = cho_solve(cho_factor(gram(best), lower=True), y) * scale
    grid = np.arange(-20.0, t.max() + 20.5, 0.5)
    mean = {b: matern32(grid, np.full(len(grid), b), t, w, amplitude, time_scale) @ alpha
            for b in GP_BANDS}
    r = mean[626.0]
    k = int(np.argmax(r))
    peak = r[k]

    def days_to(fraction, step):
        j = k
        while 0 <= j + step < len(r) and r[j] >= fraction * peak:
            j += step
        return abs(grid[j] - grid[k])

    after = [np.interp(grid[k] + d, grid, r, left=0.0, right=0.0) / peak for d in (10, 20, 30)]
    log = lambda v: np.log10(max(v, 1.0))
    return ([log(mean[b].max()) for b in GP_BANDS]
            + [days_to(0.5, -1), days_to(0.5, 1), days_to(0.2, 1), np.log10(time_scale),
               log(amplitude * scale), log(np.clip(r, 0, None).sum() * 0.5)]
            + after + [r.min() / peak, r.std() / np.abs(r).max(), float(np.mean(r > 0.5 * peak))])


def space_measures(X, names, pairs, truth):
    """Twin in 10 and the Rubin twins' vote by their 10 nearest labelled ZTF versions, in the
    space of rows X (standardised here; a feature missing on either side is left out of a
    distance, as the engine masks it)."""
    X = (X - np.nanmedian(X, axis=0)) / (np.nanstd(X, axis=0) + 1e-9)
    row = {n: i for i, n in enumerate(names)}

    def dist(i, rows):
        d = X[rows] - X[i]
        ok = ~np.isnan(d)
        return np.sqrt(np.where(ok, d * d, 0).sum(1) / np.maximum(ok.sum(1), 1))

    everyone = np.arange(len(names))
    other = np.array([i for i, n in enumerate(names) if not n.startswith("ZTF")])
    hits, hits_other = 0, 0
    for z, r, _ in pairs:
        d = dist(row[z], everyone)
        d[row[z]] = np.inf
        hits += row[r] in set(np.argsort(d)[:10])
        hits_other += row[r] in set(other[np.argsort(d[other])[:10]])
    ztf = np.array([row[z] for z, _, _ in pairs])
    label = [truth[b] for _, _, b in pairs]
    actual, predicted = [], []
    for _, r, b in pairs:
        near = np.argsort(dist(row[r], ztf))[:10]
        votes = [label[j] for j in near]
        predicted.append(max(sorted(set(votes)), key=votes.count))
        actual.append(truth[b])
    return {"twin_in_10": hits / len(pairs),
            "twin_in_10_of_the_other_survey": hits_other / len(pairs),
            "vote_rubin_twins_macro_f1": float(f1_score(actual, predicted, average="macro"))}


def manifest(path):
    with open(path) as f:
        return [(r["object_id"], r["base_id"]) for r in csv.DictReader(f)]


def measure(binary, work, cadence, args, truth):
    work.mkdir(parents=True, exist_ok=True)
    ids = {}
    for survey in ("ztf", "lsst"):
        out = work / survey
        run(binary, "generate", "--out", out, "--objects", args.objects, "--seed", args.seed,
            "--backfill", "--cadence", cadence, "--survey", survey,
            "--manifest", work / f"{survey}.csv", REPO / "data" / "lightcurves" / "SNIa",
            REPO / "data" / "lightcurves" / "RRLyrae")
        ids[survey] = manifest(work / f"{survey}.csv")
    db = work / "db"
    run(binary, "ingest", "--db", db, "--json", work / "ztf", work / "lsst", json_out=True)
    run(binary, "export", "--db", db, "--out", work / "vectors.parquet")
    t = pq.read_table(work / "vectors.parquet").to_pydict()
    vec = {o: np.asarray(v, dtype=np.float64) for o, v in zip(t["object_id"], t["embedding"])
           if v}
    ndet = dict(zip(t["object_id"], t["n_detections"]))
    pairs = [(z, r, zb) for (z, zb), (r, _) in zip(ids["ztf"], ids["lsst"])
             if z in vec and r in vec]
    names = sorted(vec)
    M = np.stack([vec[n] for n in names])
    row = {n: i for i, n in enumerate(names)}
    exact_hits, engine_hits, flux_hits, curves_hits = 0, 0, 0, 0
    for z, r, _ in pairs:
        d = np.linalg.norm(M - M[row[z]], axis=1)
        d[row[z]] = np.inf
        near = {names[i] for i in np.argsort(d)[:10]}
        exact_hits += r in near
        got = run(binary, "similar", "--db", db, z, "-k", "10", "--json", json_out=True)
        engine_hits += r in {n["object_id"] for n in got["neighbours"]}
        got = run(binary, "similar", "--db", db, z, "-k", "10", "--features", "flux", "--json",
                  json_out=True)
        flux_hits += r in {n["object_id"] for n in got["neighbours"]}
        got = run(binary, "similar", "--db", db, z, "-k", "10", "--features", "curves", "--json",
                  json_out=True)
        curves_hits += r in {n["object_id"] for n in got["neighbours"]}
    # The vote: ZTF versions labelled by their base's class.
    labels = work / "ztf_labels.csv"
    with open(labels, "w") as f:
        f.write("objectId,class\n")
        for z, _, base in pairs:
            f.write(f"{z},{truth[base]}\n")
    run(binary, "labels", "--db", db, labels, "--json", json_out=True)
    e = run(binary, "evaluate", "--db", db, "--labels", labels, "--json", json_out=True)
    actual, predicted, by_flux, by_curves = [], [], [], []
    for _, r, base in pairs:
        c = run(binary, "classify", "--db", db, r, "--json", json_out=True)
        actual.append(truth[base])
        predicted.append(c["class"] or "none")
        c = run(binary, "classify", "--db", db, r, "--features", "flux", "--json", json_out=True)
        by_flux.append(c["class"] or "none")
        c = run(binary, "classify", "--db", db, r, "--features", "curves", "--json",
                json_out=True)
        by_curves.append(c["class"] or "none")
    classes = sorted(set(actual))
    rubin_f1 = f1_score(actual, predicted, labels=classes, average="macro", zero_division=0)
    rubin_flux_f1 = f1_score(actual, by_flux, labels=classes, average="macro", zero_division=0)
    rubin_curves_f1 = f1_score(actual, by_curves, labels=classes, average="macro",
                               zero_division=0)
    # The flux-space prototype, beside the same Python measures on the engine's vectors.
    detections = {o: run(binary, "object", "--db", db, o, "--json", json_out=True)["detections"]
                  for o in names}
    flux = np.array([flux_features(detections[o]) for o in names], dtype=np.float64)
    fitted = np.array([bazin_features(detections[o]) for o in names], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = np.array([gp_features(detections[o], "ztf" if o.startswith("ZTF") else "lsst")
                       for o in names], dtype=np.float64)
    prototype = {"engine_vectors": space_measures(M, names, pairs, truth),
                 "flux_features": space_measures(flux, names, pairs, truth),
                 "flux_features_and_bazin_fit": space_measures(np.hstack([flux, fitted]), names,
                                                               pairs, truth),
                 "gaussian_process": space_measures(gp, names, pairs, truth),
                 "flux_features_and_gaussian_process": space_measures(np.hstack([flux, gp]),
                                                                      names, pairs, truth),
                 "bazin_fit_converged": float(np.mean(~np.isnan(fitted[:, 0])))}
    det = lambda survey: float(np.median([ndet[p[0 if survey == "ztf" else 1]] for p in pairs]))
    return {
        "cadence": cadence,
        "objects_generated": args.objects,
        "pairs_embedded": len(pairs),
        "median_detections": {"ztf": det("ztf"), "lsst": det("lsst")},
        "twin_in_10_engine": engine_hits / len(pairs),
        "twin_in_10_exact": exact_hits / len(pairs),
        "twin_in_10_engine_flux_preset": flux_hits / len(pairs),
        "twin_in_10_engine_curves_preset": curves_hits / len(pairs),
        "vote_ztf_leave_one_out_macro_f1": e["macro_f1"],
        "vote_ztf_leave_one_out_accuracy": e["accuracy"],
        "vote_rubin_twins_by_ztf_labels_macro_f1": float(rubin_f1),
        "vote_rubin_twins_by_ztf_labels_accuracy":
            float(np.mean([a == p for a, p in zip(actual, predicted)])),
        "vote_rubin_twins_by_ztf_labels_flux_preset_macro_f1": float(rubin_flux_f1),
        "vote_rubin_twins_by_ztf_labels_curves_preset_macro_f1": float(rubin_curves_f1),
        "python_measures": prototype,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--asterism", type=Path, default=RELEASE_BINARY)
    p.add_argument("--objects", type=int, default=300)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    with open(REPO / "data" / "labels" / "lightcurves.csv") as f:
        truth = {r["objectId"]: r["class"] for r in csv.DictReader(f)}
    t0 = time.time()
    result = {"asterism": run(args.asterism, "--version").strip(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="asterism-surveys-") as tmp:
        for cadence in ("survey", "base"):
            log(f"cadence {cadence}")
            result["runs"].append(measure(args.asterism, Path(tmp) / cadence, cadence, args,
                                          truth))
    result["seconds"] = round(time.time() - t0, 1)
    lines = ["| generator | pairs | median detections ZTF / Rubin | twin in 10 (engine) | "
             "twin in 10 (exact) | vote macro-F1, ZTF (LOO) | vote macro-F1, Rubin twins "
             "by ZTF labels |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| `--cadence {r['cadence']}` | {r['pairs_embedded']} | "
                     f"{r['median_detections']['ztf']:.0f} / {r['median_detections']['lsst']:.0f}"
                     f" | {r['twin_in_10_engine']:.3f} | {r['twin_in_10_exact']:.3f} | "
                     f"{r['vote_ztf_leave_one_out_macro_f1']:.3f} | "
                     f"{r['vote_rubin_twins_by_ztf_labels_macro_f1']:.3f} |")
    lines += ["", "| generator | twin in 10, `similar --features flux` | twin in 10, `similar "
              "--features curves` | vote macro-F1, Rubin twins by ZTF labels, `classify "
              "--features flux` | the same, `classify --features curves` |",
              "|---|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| `--cadence {r['cadence']}` | {r['twin_in_10_engine_flux_preset']:.3f} | "
                     f"{r['twin_in_10_engine_curves_preset']:.3f} | "
                     f"{r['vote_rubin_twins_by_ztf_labels_flux_preset_macro_f1']:.3f} | "
                     f"{r['vote_rubin_twins_by_ztf_labels_curves_preset_macro_f1']:.3f} |")
    lines += ["", "| space (Python measures, same objects) | cadence | twin in 10 | twin in the "
              "10 nearest of the other survey | vote macro-F1, Rubin twins by 10 nearest ZTF |",
              "|---|---|---:|---:|---:|"]
    for r in result["runs"]:
        for space, m in r["python_measures"].items():
            if not isinstance(m, dict):
                continue
            lines.append(f"| {space} | `{r['cadence']}` | {m['twin_in_10']:.3f} | "
                         f"{m['twin_in_10_of_the_other_survey']:.3f} | "
                         f"{m['vote_rubin_twins_macro_f1']:.3f} |")
    result["markdown"] = "\n".join(lines)
    print(json.dumps(result, indent=2))
    print(result["markdown"])
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
