// Asterism panel: "objects like this one", drawn from the JSON API of the server that serves
// this file. Plain JavaScript and uPlot (vendored from npm, MIT: /assets/uplot/): uPlot lays
// out each plot's scales, axes and grid, and this file draws the astronomy on its canvas
// (per-band colours and symbols, error bars, reversed magnitude axis or signed flux with its
// unit, upper limits as open down-triangles that the "upper limits" box hides). After drawing,
// each plot carries data-points, data-limits and data-inked (non-blank pixels), and <body>
// data-state ("ready" or "error"), so a browser test can read what was drawn.
"use strict";

(function () {
  const main = document.getElementById("panel");
  const body = document.body;
  const mode = main.dataset.mode;
  const objectId = main.dataset.objectId;
  const objectUrl = main.dataset.objectUrl;
  const params = new URLSearchParams(location.search);
  const started = performance.now();
  const state = { showLimits: params.get("limits") !== "0", panel: null, anomalies: [] };

  let scriptErrors = 0;
  window.addEventListener("error", function () {
    scriptErrors += 1;
    body.dataset.scriptErrors = String(scriptErrors);
  });

  // Band colours and symbols as ZTF and Rubin plots draw them.
  const BANDS = {
    u: { color: "#6a3d9a", shape: "triangle", glyph: "\u25B2" },
    g: { color: "#1a9850", shape: "circle", glyph: "\u25CF" },
    r: { color: "#d62728", shape: "square", glyph: "\u25A0" },
    i: { color: "#e08214", shape: "diamond", glyph: "\u25C6" },
    z: { color: "#8c510a", shape: "cross", glyph: "\u271A" },
    y: { color: "#333333", shape: "x", glyph: "\u2716" },
  };
  const UNITS = {
    diff_mag: "difference magnitude",
    mag: "magnitude",
    flux_njy: "flux (nJy)",
    flux_dn: "flux (DN)",
    flux: "flux",
  };
  function band(name) {
    return BANDS[name] || { color: "#777777", shape: "circle", glyph: "\u25CF" };
  }

  // ---- sign-in: the user's name and token live in this tab only (sessionStorage).
  function store() {
    try {
      return window.sessionStorage;
    } catch (e) {
      return null;
    }
  }
  function signedIn() {
    const s = store();
    return {
      user: (s && s.getItem("asterism.user")) || "",
      token: (s && s.getItem("asterism.token")) || "",
    };
  }

  async function api(path, init) {
    const headers = { Accept: "application/json" };
    const who = signedIn();
    if (who.token) headers.Authorization = "Bearer " + who.token;
    const options = Object.assign({ headers: headers }, init || {});
    if (options.body) headers["Content-Type"] = "application/json";
    const response = await fetch("/api/v1/" + path, options);
    const text = await response.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = { error: text };
    }
    if (!response.ok) {
      const err = new Error((data && data.error) || response.statusText);
      err.status = response.status;
      throw err;
    }
    return data;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      // Through the CSSOM: the page's CSP admits no inline style attributes.
      else if (k === "style") node.style.cssText = v;
      else node.setAttribute(k, v);
    }
    for (const c of children || []) if (c) node.appendChild(c);
    return node;
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function fmt(x, digits) {
    return x === null || x === undefined ? "-" : Number(x).toFixed(digits);
  }

  function linkTo(id) {
    if (objectUrl) return objectUrl.split("{id}").join(encodeURIComponent(id));
    return "/panel/" + encodeURIComponent(id) + location.search;
  }

  // ---- drawing

  /// The series drawn for a lightcurve: the detections in magnitudes if it has any, else in
  /// its first flux unit (forced photometry only when there is nothing else).
  function drawable(lc) {
    const detected = (s) => s.is_limit.some((l) => !l);
    const det = lc.series.filter((s) => s.kind === "detection");
    const main = det.find((s) => s.magnitude && detected(s)) || det.find(detected) ||
      lc.series.find(detected);
    if (!main) return { unit: null, magnitude: true, series: [] };
    const kind = main.kind;
    return {
      unit: main.unit,
      magnitude: main.magnitude,
      series: lc.series.filter((s) => s.unit === main.unit && s.kind === kind),
    };
  }

  function marker(ctx, shape, x, y, r, filled) {
    ctx.beginPath();
    switch (shape) {
      case "square":
        ctx.rect(x - r * 0.85, y - r * 0.85, r * 1.7, r * 1.7);
        break;
      case "diamond":
        ctx.moveTo(x, y - r * 1.2); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r * 1.2); ctx.lineTo(x - r, y);
        ctx.closePath();
        break;
      case "triangle":
        ctx.moveTo(x, y - r * 1.1); ctx.lineTo(x + r, y + r * 0.8); ctx.lineTo(x - r, y + r * 0.8);
        ctx.closePath();
        break;
      case "down":
        ctx.moveTo(x - r, y - r * 0.8); ctx.lineTo(x + r, y - r * 0.8); ctx.lineTo(x, y + r * 1.1);
        ctx.closePath();
        break;
      case "cross":
        ctx.moveTo(x - r, y); ctx.lineTo(x + r, y); ctx.moveTo(x, y - r); ctx.lineTo(x, y + r);
        ctx.stroke();
        return;
      case "x":
        ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
        ctx.stroke();
        return;
      default:
        ctx.arc(x, y, r, 0, 2 * Math.PI);
    }
    if (filled) ctx.fill();
    else ctx.stroke();
  }

  /// Draws `lc` in `box` (a <div>) with uPlot (vendored, /assets/uplot/): uPlot lays out the
  /// scales, axes, ticks and grid (magnitudes on a reversed axis, brighter up; fluxes with
  /// their unit and a dashed zero line), and its draw hook puts the band symbols, error bars
  /// and open down-triangle limits on its canvas. opts: time(mjd) -> x value, xRange ([lo, hi]
  /// or null: the data's), xLabel, small (thumbnail). The box and the canvas get data-points,
  /// data-limits, data-unit and data-inked (non-blank pixels) for tests.
  function draw(box, lc, opts) {
    if (box.plot) {
      box.plot.destroy();
      box.plot = null;
    }
    const what = drawable(lc);
    const points = [];
    const limits = [];
    for (const s of what.series) {
      for (let i = 0; i < s.mjd.length; i++) {
        const p = { x: opts.time(s.mjd[i]), y: s.value[i], e: s.error[i] || 0, band: s.band };
        if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) continue;
        if (s.is_limit[i]) limits.push(p);
        else points.push(p);
      }
    }
    const shownLimits = state.showLimits ? limits : [];
    const xs = points.concat(shownLimits).map((p) => p.x);
    let [x0, x1] = opts.xRange || (xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1]);
    if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
    const xPad = opts.xRange ? 0 : 0.03 * (x1 - x0);
    x0 -= xPad; x1 += xPad;
    // y range from the detections with their errors (errors capped, so one wild point does
    // not flatten the rest) and the shown limits.
    const ys = [];
    for (const p of points) { const e = Math.min(p.e, 1.0 * (what.magnitude ? 1 : Math.abs(p.y) + 1)); ys.push(p.y - e, p.y + e); }
    for (const p of shownLimits) ys.push(p.y);
    if (!what.magnitude) ys.push(0);
    let y0 = ys.length ? Math.min(...ys) : 0;
    let y1 = ys.length ? Math.max(...ys) : 1;
    if (!(y1 > y0)) { y0 -= 0.5; y1 += 0.5; }
    const yPad = 0.06 * (y1 - y0);
    y0 -= yPad; y1 += yPad;

    const font = (opts.small ? 9 : 11) + "px system-ui, sans-serif";
    const axis = {
      stroke: "#5f6b7a",
      font: font,
      labelFont: font,
      grid: { stroke: "#eef1f5", width: 1 },
      ticks: { stroke: "#9aa5b1", width: 1, size: 3 },
    };
    let drawn = 0;
    let drawnLimits = 0;
    const paint = function (u) {
      const ctx = u.ctx;
      const ratio = uPlot.pxRatio;
      const b = u.bbox;
      const px = (x) => u.valToPos(x, "x", true);
      const py = (y) => u.valToPos(y, "y", true);
      ctx.save();
      ctx.beginPath(); ctx.rect(b.left, b.top, b.width, b.height); ctx.clip();
      if (!what.magnitude && y0 < 0 && y1 > 0) {
        ctx.strokeStyle = "#9aa5b1";
        ctx.lineWidth = ratio;
        ctx.setLineDash([4 * ratio, 3 * ratio]);
        ctx.beginPath(); ctx.moveTo(b.left, py(0)); ctx.lineTo(b.left + b.width, py(0)); ctx.stroke();
        ctx.setLineDash([]);
      }
      const r = (opts.small ? 2 : 3.2) * ratio;
      drawn = 0;
      drawnLimits = 0;
      for (const p of shownLimits) {
        ctx.strokeStyle = band(p.band).color;
        ctx.lineWidth = 1.2 * ratio;
        marker(ctx, "down", px(p.x), py(p.y), r + ratio, false);
        drawnLimits += 1;
      }
      for (const p of points) {
        const s = band(p.band);
        const x = px(p.x);
        ctx.strokeStyle = s.color;
        ctx.fillStyle = s.color;
        ctx.lineWidth = ratio;
        if (p.e > 0) {
          ctx.beginPath(); ctx.moveTo(x, py(p.y - p.e)); ctx.lineTo(x, py(p.y + p.e)); ctx.stroke();
        }
        ctx.lineWidth = 1.6 * ratio;
        marker(ctx, s.shape, x, py(p.y), r, true);
        drawn += 1;
      }
      ctx.restore();
      ctx.strokeStyle = "#9aa5b1";
      ctx.lineWidth = ratio;
      ctx.strokeRect(b.left, b.top, b.width, b.height);
      const canvas = ctx.canvas;
      const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let inked = 0;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked += 1;
      for (const target of [box, canvas]) {
        target.dataset.points = String(drawn);
        target.dataset.limits = String(drawnLimits);
        target.dataset.unit = what.unit || "";
        target.dataset.inked = String(inked);
      }
    };
    const plot = new uPlot({
      width: Math.max(box.clientWidth || 600, 120),
      height: opts.small ? 110 : 300,
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      scales: {
        x: { time: false, range: () => [x0, x1] },
        y: { range: () => [y0, y1], dir: what.magnitude ? -1 : 1 },
      },
      axes: [
        Object.assign({ size: opts.small ? 18 : 30, space: opts.small ? 50 : 70,
          label: opts.small ? null : opts.xLabel, labelSize: opts.small ? 0 : 16 }, axis),
        Object.assign({ size: opts.small ? 30 : 44, space: opts.small ? 24 : 34,
          label: opts.small ? null : UNITS[what.unit] || what.unit || "", labelSize: opts.small ? 0 : 18 }, axis),
      ],
      // One invisible series: uPlot draws the frame; the points are the draw hook's.
      series: [{}, { show: true, paths: () => null, points: { show: false } }],
      hooks: { draw: [paint] },
    }, [[x0, x1], [null, null]], box);
    box.plot = plot;
    return { bands: [...new Set(points.concat(shownLimits).map((p) => p.band))], limits: limits.length };
  }

  function legend(bands, hasLimits) {
    const box = document.getElementById("legend");
    box.textContent = "";
    for (const b of bands.sort()) {
      const s = band(b);
      const item = el("span", {}, [el("b", { style: "color:" + s.color, text: s.glyph + " " }), document.createTextNode(b)]);
      box.appendChild(item);
    }
    if (hasLimits) box.appendChild(el("span", { text: "\u25BD upper limit" }));
  }

  // ---- the object panel

  function sinceFirst(lc) {
    const t0 = lc.first_mjd;
    return (mjd) => mjd - t0;
  }

  function sharedRange(lightcurves) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const lc of lightcurves) {
      const t = sinceFirst(lc);
      for (const s of drawable(lc).series) {
        for (let i = 0; i < s.mjd.length; i++) {
          if (s.is_limit[i] && !state.showLimits) continue;
          lo = Math.min(lo, t(s.mjd[i]));
          hi = Math.max(hi, t(s.mjd[i]));
        }
      }
    }
    if (!(hi > lo)) return null;
    const pad = 0.03 * (hi - lo);
    return [lo - pad, hi + pad];
  }

  function redraw() {
    const p = state.panel;
    if (p) {
      const plot = document.getElementById("lightcurve");
      const drawn = draw(plot, p.lightcurve, { time: (m) => m, xRange: null, xLabel: "MJD", small: false });
      legend(drawn.bands, drawn.limits > 0);
      const range = sharedRange(p.neighbours.map((n) => n.lightcurve));
      for (const n of p.neighbours) {
        const c = main.querySelector('article.neighbour[data-object-id="' + CSS.escape(n.object_id) + '"] .thumb');
        if (c) draw(c, n.lightcurve, { time: sinceFirst(n.lightcurve), xRange: range, small: true });
      }
    }
    const range = sharedRange(state.anomalies.map((a) => a.lightcurve));
    for (const a of state.anomalies) {
      const c = main.querySelector('article.anomaly[data-object-id="' + CSS.escape(a.object_id) + '"] .thumb');
      if (c) draw(c, a.lightcurve, { time: sinceFirst(a.lightcurve), xRange: range, small: true });
    }
  }

  function voteButtons(id) {
    const box = el("div", { class: "votes" }, [
      el("button", { type: "button", class: "up", "data-vote": "up", title: "more like this", "aria-pressed": "false", text: "\u25B2 up" }),
      el("button", { type: "button", class: "down", "data-vote": "down", title: "not interesting", "aria-pressed": "false", text: "\u25BC down" }),
      el("span", { class: "vote-state muted" }),
    ]);
    box.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-vote]");
      if (button) vote(id, button.dataset.vote, box);
    });
    return box;
  }

  async function vote(id, direction, box) {
    const who = signedIn();
    const status = box.querySelector(".vote-state");
    if (!who.user || !who.token) {
      status.textContent = "sign in to vote";
      return;
    }
    status.textContent = "\u2026";
    try {
      await api("votes", { method: "POST", body: JSON.stringify({ user: who.user, object_id: id, vote: direction }) });
      for (const b of box.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.vote === direction));
      status.textContent = "recorded";
      await recommendations();
      if (mode === "anomalies") await loadAnomalies();
      // Last, so that whoever waits for it sees the recommendations that follow the vote.
      box.closest("article").dataset.voted = direction;
    } catch (e) {
      status.textContent = e.message;
    }
  }

  async function recommendations() {
    const who = signedIn();
    const section = document.getElementById("recommendations");
    const list = document.getElementById("recommended");
    if (!who.user || !who.token) {
      section.hidden = true;
      return;
    }
    try {
      const recs = await api("recommend?user=" + encodeURIComponent(who.user) + "&top=10");
      list.textContent = "";
      for (const r of recs) {
        list.appendChild(el("li", { dataset: { objectId: r.object_id } }, [
          el("a", { href: linkTo(r.object_id), text: r.object_id }),
          document.createTextNode(" " + (r.class || "unlabelled") + ", score " + fmt(r.score, 3)),
        ]));
      }
      section.hidden = false;
      section.dataset.count = String(recs.length);
    } catch (e) {
      // No votes yet: nothing to recommend from.
      section.hidden = true;
    }
  }

  function verdict(p) {
    const box = document.getElementById("verdict");
    box.textContent = "";
    const vote = el("div", { id: "classification" }, [el("h2", { text: "Vote of the neighbours" })]);
    const c = p.classification;
    if (c) {
      vote.appendChild(el("p", { class: "muted", text: (c.class || "no class") + " (confidence " + fmt(c.confidence, 2) + ", by " + c.method + ", " + c.voters.length + " labelled voters)" }));
      const probs = Object.entries(c.probabilities).sort((a, b) => b[1] - a[1]);
      for (const [cls, prob] of probs) {
        const fill = el("div", { class: "bar-fill", style: "width:" + Math.round(100 * prob) + "%" });
        vote.appendChild(el("div", { class: "prob", dataset: { class: cls } }, [el("span", { text: cls }), el("div", {}, [fill]), el("span", { text: fmt(prob, 2) })]));
      }
      if (c.labels && c.labels.length) vote.appendChild(el("p", { class: "muted", text: "labelled " + c.labels.map((l) => l.class + " by " + l.source).join("; ") }));
    } else {
      vote.appendChild(el("p", { class: "muted", text: "not embedded yet" }));
    }
    const anomaly = el("div", { id: "anomaly" }, [el("h2", { text: "Anomaly score" })]);
    if (p.anomaly) {
      anomaly.appendChild(el("p", { dataset: { score: String(p.anomaly.score) }, text: fmt(p.anomaly.score, 3) + " (percentile rank among all objects)" }));
      anomaly.appendChild(el("p", { class: "muted", text: "LOF " + fmt(p.anomaly.lof, 2) + ", isolation " + fmt(p.anomaly.isolation, 3) + " \u2014 " + p.anomaly_source }));
    } else {
      anomaly.appendChild(el("p", { class: "muted", text: "no score yet" }));
    }
    box.appendChild(vote);
    box.appendChild(anomaly);
  }

  function neighbourCard(n, s, rank) {
    // The curves preset ranks by how the lightcurves fit, not by features: no feature explains it.
    const curves = params.get("features") === "curves";
    const why = !curves && s.explanation && s.explanation.closest ? s.explanation.closest.slice(0, 3).map((f) => f.feature).join(", ") : "";
    const distanceTitle = curves
      ? "mismatch of the lightcurves with the time shift's cost: 0 the same fluxes at the same dates, 1 unrelated or too short to compare, 2 opposite or observed apart"
      : "distance in the embedding";
    const label = n.label ? n.label + " (" + n.labelled_by + ")" : s.class ? s.class + " (predicted)" : "unlabelled";
    return el("article", { class: "neighbour", dataset: { objectId: n.object_id, rank: String(rank) } }, [
      el("header", {}, [
        el("span", { class: "rank", text: "#" + rank }),
        el("a", { href: linkTo(n.object_id), target: mode === "embed" ? "_blank" : null, rel: "noopener", text: n.object_id }),
        el("span", { class: "distance", title: distanceTitle, text: "d " + fmt(s.distance, 3) }),
      ]),
      el("div", { class: "thumb", role: "img", "aria-label": "lightcurve of " + n.object_id }),
      el("p", { class: "meta", text: label + " \u00B7 " + s.detections + " detections" }),
      why ? el("p", { class: "why", text: "alike in " + why }) : curves ? el("p", { class: "why", text: "ranked by how the lightcurves fit" }) : null,
      voteButtons(n.object_id),
    ]);
  }

  function query() {
    const q = new URLSearchParams();
    for (const name of ["k", "class", "min_detections", "since", "as_of", "features"]) {
      const v = params.get(name);
      if (v) q.set(name, v);
    }
    return q.toString();
  }

  async function loadPanel() {
    const q = query();
    const p = await api("objects/" + encodeURIComponent(objectId) + "/panel" + (q ? "?" + q : ""));
    state.panel = p;
    const lc = p.lightcurve;
    document.getElementById("summary").textContent =
      lc.survey.toUpperCase() + " \u00B7 " + lc.n_detections + " detections \u00B7 MJD " + fmt(lc.first_mjd, 2) + " \u2013 " + fmt(lc.last_mjd, 2) +
      (p.similar.as_of !== null ? " \u00B7 neighbours as of MJD " + p.similar.as_of : "");
    const select = document.querySelector("#controls select[name=class]");
    if (select.options.length === 1) for (const c of p.classes) select.appendChild(el("option", { value: c, text: c }));
    select.value = params.get("class") || "";
    verdict(p);
    const box = document.getElementById("neighbours");
    box.textContent = "";
    box.appendChild(el("h2", { style: "grid-column: 1 / -1", text: p.neighbours.length + " nearest objects (time since first detection, days)" }));
    p.neighbours.forEach((n, i) => box.appendChild(neighbourCard(n, p.similar.neighbours[i], i + 1)));
  }

  async function loadAnomalies() {
    const who = signedIn();
    const q = new URLSearchParams({ top: params.get("top") || "12" });
    if (params.get("since")) q.set("since", params.get("since"));
    let list;
    let personal = false;
    if (who.user && who.token) {
      try {
        q.set("user", who.user);
        list = await api("anomalies?" + q.toString());
        personal = true;
      } catch (e) {
        if (e.status !== 404) throw e;
        q.delete("user");
      }
    }
    if (!list) list = await api("anomalies?" + q.toString());
    const lightcurves = await Promise.all(list.map((a) => api("objects/" + encodeURIComponent(a.object_id) + "/lightcurve")));
    state.anomalies = list.map((a, i) => Object.assign({ lightcurve: lightcurves[i] }, a));
    document.getElementById("title").textContent = personal ? "Tonight's anomalies for " + who.user : "Tonight's anomalies";
    document.getElementById("summary").textContent = (personal ? "re-ranked by your votes; " : "") + "LOF on the kNN graph + isolation forest" + (params.get("since") ? "; detected since MJD " + params.get("since") : "");
    const box = document.getElementById("anomalies");
    box.textContent = "";
    state.anomalies.forEach((a, i) => {
      box.appendChild(el("article", { class: "anomaly", dataset: { objectId: a.object_id, rank: String(i + 1) } }, [
        el("header", {}, [
          el("span", { class: "rank", text: "#" + (i + 1) }),
          el("a", { href: "/panel/" + encodeURIComponent(a.object_id), text: a.object_id }),
          el("span", { class: "distance", text: "score " + fmt(a.score, 3) }),
        ]),
        el("div", { class: "thumb", role: "img", "aria-label": "lightcurve of " + a.object_id }),
        el("p", { class: "meta", text: a.lightcurve.survey.toUpperCase() + " \u00B7 " + a.lightcurve.n_detections + " detections \u00B7 LOF " + fmt(a.lof, 2) + ", isolation " + fmt(a.isolation, 3) }),
        voteButtons(a.object_id),
      ]));
    });
    redraw();
  }

  // ---- controls

  function fillControls() {
    const form = document.getElementById("controls");
    for (const name of ["k", "min_detections", "since", "as_of", "features"]) {
      const v = params.get(name);
      if (v) form.elements[name].value = v;
    }
    document.getElementById("limits").checked = state.showLimits;
    const who = signedIn();
    const signin = document.getElementById("signin");
    signin.elements.user.value = who.user || params.get("user") || "";
    document.getElementById("who").textContent = who.user && who.token ? "signed in as " + who.user : "";
  }

  document.getElementById("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    for (const name of ["k", "class", "min_detections", "since", "as_of", "features"]) {
      const field = form.elements[name];
      if (field && field.value) params.set(name, field.value);
      else params.delete(name);
    }
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
    load();
  });

  document.getElementById("limits").addEventListener("change", (event) => {
    state.showLimits = event.target.checked;
    redraw();
  });

  document.getElementById("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    const s = store();
    if (s) {
      s.setItem("asterism.user", event.target.elements.user.value.trim());
      s.setItem("asterism.token", event.target.elements.token.value.trim());
    }
    event.target.elements.token.value = "";
    fillControls();
    recommendations();
    if (mode === "anomalies") load();
  });

  function tellHost() {
    if (mode !== "embed" || window.parent === window) return;
    const post = () => window.parent.postMessage({ type: "asterism:height", objectId: objectId, height: document.documentElement.scrollHeight }, "*");
    new ResizeObserver(post).observe(document.body);
    post();
  }

  async function load() {
    body.dataset.state = "loading";
    showError("");
    try {
      if (mode === "anomalies") await loadAnomalies();
      else await loadPanel();
      redraw();
      await recommendations();
      body.dataset.loadMs = String(Math.round(performance.now() - started));
      body.dataset.state = "ready";
    } catch (e) {
      showError(e.message);
      body.dataset.state = "error";
    }
  }

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(redraw, 100);
  });

  fillControls();
  tellHost();
  load();
})();
