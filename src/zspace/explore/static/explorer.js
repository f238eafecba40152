// zspace explore: the page. Plain JS, no build step, no external assets; talks only to the zspace server
// through the JSON/PNG API described in src/zspace/explore/server.py.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  /** Retry delay after a 503 (the server's decode queue is full), doubled per retry up to RETRY_MAX_MS. */
  const RETRY_MS = 80;
  const RETRY_MAX_MS = 1000;
  /** A 503 is retried this many times before the page reports it. */
  const RETRY_LIMIT = 12;
  /** Hover picks the nearest point within this many CSS pixels. */
  const HOVER_PX = 8;
  /** Nearest neighbours shown per run in the comparison panel. */
  const COMPARE_K = 5;

  // tab10, then tab20's lighter partners: distinguishable for up to 20 classes; more cycle through hues.
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#c7c7c7", "#dbdb8d", "#9edae5"];
  const colourOf = (k) => (k < PALETTE.length ? PALETTE[k] : `hsl(${(k * 137.5) % 360} 60% 50%)`);

  const state = {
    runs: [], comparable: false, run: 0,
    map: null,          // {x, y, index, color, color_names} of the current run
    view: null,         // data -> pixel transform of the map
    pointsLayer: null,  // offscreen canvas of the points at the current size
    hover: -1,          // index into map arrays of the hovered point, -1 for none
    cursor: null,       // keyboard cursor on the map, CSS pixels {px, py}
    pick: null,         // {z0, x, y, neighbours, weights, nearest, source}
    directions: null,   // /directions of the current run
    a: null, b: null,   // {z, x, y, text, url}: the ends of the interpolation
    prior: null,        // the last /prior answer, with dist
    priorSeed: 0,
    decodedBlob: null,
    clipped: false,     // the last currentZ() was shrunk onto the server's |z| bound
    generation: 0,      // bumped on every run switch / new pick: answers for older ones are dropped
    stats: { decodeSent: 0, decodeShown: 0, priorSent: 0, retries: 0 },
  };
  // Exposed for the browser tests and for curious users in the console; the page does not read it back.
  window.zspaceExplorer = {
    state, pointPixel, pickAt,
    currentZ: () => currentZ(),
    idle: () => !decoder.inFlight && decoder.pending === null && !priorSampler.inFlight,
  };

  // ---------------------------------------------------------------- requests

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function request(path, options = {}) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw new ApiError(0, `the server did not answer (${err.message}); is zspace explore still running?`);
    }
    if (!response.ok) {
      let reason = response.statusText || "request failed";
      try {
        const body = await response.json();
        if (body && typeof body.error === "string") reason = body.error;
      } catch (_) { /* not JSON: keep the status text */ }
      throw new ApiError(response.status, `${response.status} ${reason}`);
    }
    return response;
  }

  const runPath = (run, rest) => `/api/runs/${run}/${rest}`;
  const getJSON = async (path) => (await request(path)).json();
  const post = (path, body) => request(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const postJSON = async (path, body) => (await post(path, body)).json();
  const postBlob = async (path, body) => (await post(path, body)).blob();
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /**
   * At most one request in flight; while it runs only the latest payload is kept (a newer one replaces it),
   * and it is sent when the running one returns. So sliding fast never builds a queue, and the last state
   * the user left is always the one that ends up shown. A 503 (server busy) retries the latest payload only.
   */
  class LatestOnly {
    constructor(send, onResult, onError) {
      Object.assign(this, { send, onResult, onError, inFlight: false, pending: null });
    }
    push(payload) {
      if (this.inFlight) { this.pending = payload; return; }
      this.run(payload);
    }
    async run(payload) {
      this.inFlight = true;
      let retries = 0;
      for (;;) {
        try {
          const result = await this.send(payload);
          if (this.pending === null) this.onResult(result, payload);
          else this.onResult(result, payload, true);  // superseded: shown anyway as live feedback
          break;
        } catch (err) {
          if (err.status === 503 && retries < RETRY_LIMIT) {
            state.stats.retries += 1;
            await sleep(Math.min(RETRY_MS * 2 ** retries, RETRY_MAX_MS));
            retries += 1;
            if (this.pending !== null) { payload = this.pending; this.pending = null; }
            continue;
          }
          this.onError(err, payload);
          break;
        }
      }
      this.inFlight = false;
      const next = this.pending;
      this.pending = null;
      if (next !== null) this.run(next);
    }
  }

  // ---------------------------------------------------------------- status line

  function say(message) {
    const status = $("status");
    status.textContent = message;
    status.classList.remove("error");
  }

  function fail(what, err) {
    const status = $("status");
    const reason = err instanceof Error ? err.message : String(err);
    status.textContent = `${what} failed: ${reason.split("\n")[0]}`;
    status.classList.add("error");
  }

  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    fail("a request", event.reason);
  });

  // ---------------------------------------------------------------- runs

  const currentRun = () => state.runs[state.run];

  async function loadRuns() {
    const answer = await getJSON("/api/runs");
    state.runs = answer.runs;
    state.comparable = Boolean(answer.comparable);
    const select = $("run-select");
    select.replaceChildren(...state.runs.map((run) => new Option(`${run.name} (${run.kind.toUpperCase()})`, run.id)));
    select.disabled = state.runs.length < 2;
    select.addEventListener("change", () => switchRun(Number(select.value)));
    $("compare-card").hidden = false;
    await switchRun(state.runs[0].id);
  }

  async function switchRun(run) {
    state.run = run;
    state.generation += 1;
    Object.assign(state, { pick: null, a: null, b: null, prior: null, directions: null, hover: -1, map: null });
    const info = currentRun();
    $("run-info").textContent = `${info.kind.toUpperCase()}, z_dim ${info.z_dim}, ${info.n_points} images`
      + (info.color_by ? `, coloured by ${info.color_by}` : "");
    $("map-projection").textContent = `(${info.projection.startsWith("tsne") ? "t-SNE" : "PCA"})`;
    const r = $("prior-r");
    r.max = String(info.prior_radius);
    r.step = String(info.prior_radius / 200);
    r.min = r.step;  // the server takes r in (0, prior_radius]
    r.value = String(Math.min(Math.sqrt(info.z_dim), info.prior_radius));
    showPriorR();
    resetPickPanels();
    say(`Loading the map of ${info.name}…`);
    const generation = state.generation;
    const [map, directions] = await Promise.all([
      getJSON(runPath(run, "map")), getJSON(runPath(run, "directions")),
    ]);
    if (generation !== state.generation) return;
    state.map = map;
    state.directions = directions;
    buildSliders();
    buildLegend();
    resizeMap();
    say(`${map.index.length} points on the map of ${info.name}. Hover to see images, click to decode.`);
    document.body.dataset.ready = String(state.generation);
  }

  // ---------------------------------------------------------------- the map

  const canvas = $("map");
  const ctx = canvas.getContext("2d");

  function resizeMap() {
    const wrap = $("map-wrap");
    const size = Math.max(200, Math.floor(Math.min(wrap.clientWidth, wrap.clientHeight || wrap.clientWidth)));
    const ratio = window.devicePixelRatio || 1;
    canvas.style.width = `${size}px`;
    canvas.style.height = `${size}px`;
    canvas.width = Math.round(size * ratio);
    canvas.height = Math.round(size * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    state.view = state.map ? fitView(state.map, size) : null;
    state.pointsLayer = null;
    drawMap();
  }

  /** Equal scale on both axes (distances on the map mean the same in x and y), centred, with a margin. */
  function fitView(map, size) {
    const pad = 14;
    const [x0, x1] = extent(map.x);
    const [y0, y1] = extent(map.y);
    const scale = (size - 2 * pad) / Math.max(x1 - x0, y1 - y0, 1e-9);
    const cx = (x0 + x1) / 2;
    const cy = (y0 + y1) / 2;
    return {
      size,
      toPx: (x, y) => [size / 2 + (x - cx) * scale, size / 2 - (y - cy) * scale],
      toData: (px, py) => [cx + (px - size / 2) / scale, cy - (py - size / 2) / scale],
    };
  }

  /** [min, max] of an array (a loop: spreading 100,000 values into Math.min overflows the call stack). */
  function extent(values) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return [lo, hi];
  }

  /** CSS pixel position of map point i inside the canvas (tests hover and click with it). */
  function pointPixel(i) {
    const [px, py] = state.view.toPx(state.map.x[i], state.map.y[i]);
    return { px, py };
  }

  const pointRadius = () => {
    const n = state.map.index.length;
    return n > 3000 ? 1.8 : n > 800 ? 2.4 : 3.2;
  };

  /** The points alone, drawn once per map and size into an offscreen canvas (hovering only redraws marks). */
  function drawPointsLayer() {
    const { size } = state.view;
    const ratio = canvas.width / size;
    const layer = document.createElement("canvas");
    layer.width = canvas.width;
    layer.height = canvas.height;
    const g = layer.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.fillStyle = "#fff";
    g.fillRect(0, 0, size, size);
    const map = state.map;
    const radius = pointRadius();
    g.globalAlpha = 0.8;
    for (let i = 0; i < map.index.length; i += 1) {
      const [px, py] = state.view.toPx(map.x[i], map.y[i]);
      g.fillStyle = map.color ? colourOf(map.color[i]) : "#4a6fa5";
      g.beginPath();
      g.arc(px, py, radius, 0, 2 * Math.PI);
      g.fill();
    }
    state.pointsLayer = layer;
  }

  function drawMap() {
    const view = state.view;
    if (!view) return;
    if (!state.pointsLayer) drawPointsLayer();
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(state.pointsLayer, 0, 0);
    ctx.restore();
    const radius = pointRadius();
    drawPriorMarks();
    drawPick();
    drawEnds();
    if (state.hover >= 0) {
      const { px, py } = pointPixel(state.hover);
      ring(px, py, radius + 3, "#111", 2);
    }
    if (state.cursor) cross(state.cursor.px, state.cursor.py, 7, "#111");
  }

  function ring(px, py, r, colour, width) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.beginPath();
    ctx.arc(px, py, r, 0, 2 * Math.PI);
    ctx.stroke();
  }

  function cross(px, py, r, colour) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(px - r, py); ctx.lineTo(px + r, py);
    ctx.moveTo(px, py - r); ctx.lineTo(px, py + r);
    ctx.stroke();
  }

  function label(px, py, text) {
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#fff";
    ctx.strokeText(text, px + 7, py - 7);
    ctx.fillStyle = "#111";
    ctx.fillText(text, px + 7, py - 7);
  }

  function drawPick() {
    const pick = state.pick;
    if (!pick || pick.x === null || pick.x === undefined) return;
    const [px, py] = state.view.toPx(pick.x, pick.y);
    ring(px, py, 11, "#fff", 6);
    ring(px, py, 11, "#111", 2.5);
    cross(px, py, 5, "#111");
  }

  function drawEnds() {
    for (const [end, name] of [[state.a, "A"], [state.b, "B"]]) {
      if (!end || end.x === null || end.x === undefined) continue;
      const [px, py] = state.view.toPx(end.x, end.y);
      ring(px, py, 6, "#111", 2);
      label(px, py, name);
    }
  }

  /**
   * Prior samples sit on their nearest encoded point; the ring grows with the z-distance to it (the hole):
   * in units of the encoded images' typical spacing when the server gives it, else relative to the farthest.
   */
  function drawPriorMarks() {
    const prior = state.prior;
    if (!prior) return;
    const unit = prior.reference_distance > 0 ? prior.reference_distance : Math.max(...prior.distances, 1e-9) / 4;
    prior.x.forEach((x, i) => {
      if (x === null || prior.y[i] === null) return;
      const [px, py] = state.view.toPx(x, prior.y[i]);
      const r = 4 + Math.min(3 * (prior.distances[i] / unit), 14);
      ring(px, py, r, "#fff", 4);
      ring(px, py, r, "#c2185b", 2);
      ctx.fillStyle = "#c2185b";
      ctx.fillRect(px - 2, py - 2, 4, 4);
    });
  }

  function buildLegend() {
    const legend = $("legend");
    const map = state.map;
    if (!map.color) { legend.replaceChildren(); return; }
    const counts = new Map();
    for (const c of map.color) counts.set(c, (counts.get(c) || 0) + 1);
    legend.replaceChildren(...map.color_names.map((name, k) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(k);
      item.append(swatch, `${name} (${counts.get(k) || 0})`);
      return item;
    }));
  }

  function nearestOnScreen(px, py) {
    const map = state.map;
    let best = -1;
    let bestD = HOVER_PX * HOVER_PX;
    for (let i = 0; i < map.index.length; i += 1) {
      const [qx, qy] = state.view.toPx(map.x[i], map.y[i]);
      const d = (qx - px) ** 2 + (qy - py) ** 2;
      if (d <= bestD) { best = i; bestD = d; }
    }
    return best;
  }

  function hoverAt(px, py) {
    if (!state.map || !state.view) return;
    const i = nearestOnScreen(px, py);
    if (i !== state.hover) {
      state.hover = i;
      drawMap();
    }
    const tooltip = $("tooltip");
    if (i < 0) { tooltip.hidden = true; return; }
    const id = state.map.index[i];
    const img = $("tooltip-img");
    const src = runPath(state.run, `image/${id}`);
    if (img.getAttribute("src") !== src) {
      img.src = src;
      img.alt = `Image ${id}`;
    }
    const name = state.map.color ? state.map.color_names[state.map.color[i]] : "";
    $("tooltip-text").textContent = `#${id}${name ? ` · ${name}` : ""}`;
    tooltip.hidden = false;
    const { size } = state.view;
    const left = px + 16 + tooltip.offsetWidth > size ? px - 16 - tooltip.offsetWidth : px + 16;
    const top = Math.min(Math.max(py - tooltip.offsetHeight / 2, 0), size - tooltip.offsetHeight);
    tooltip.style.left = `${left}px`;
    tooltip.style.top = `${top}px`;
  }

  function eventPixel(event) {
    const box = canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  $("tooltip-img").addEventListener("error", (event) => {
    fail("loading the hovered image", new Error(`${event.target.getAttribute("src")} did not load`));
  });
  canvas.addEventListener("mousemove", (event) => hoverAt(...eventPixel(event)));
  canvas.addEventListener("mouseleave", () => {
    $("tooltip").hidden = true;
    if (state.hover >= 0) { state.hover = -1; drawMap(); }
  });
  canvas.addEventListener("click", (event) => pickAt(...eventPixel(event)));
  canvas.addEventListener("keydown", (event) => {
    if (!state.view) return;
    const step = state.view.size / 50;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const cursor = state.cursor || { px: state.view.size / 2, py: state.view.size / 2 };
    if (moves[event.key]) {
      const [dx, dy] = moves[event.key];
      const clamp = (v) => Math.min(Math.max(v, 0), state.view.size);
      state.cursor = { px: clamp(cursor.px + dx), py: clamp(cursor.py + dy) };
      hoverAt(state.cursor.px, state.cursor.py);
      drawMap();
      event.preventDefault();
    } else if (event.key === "Enter" || event.key === " ") {
      state.cursor = cursor;
      pickAt(cursor.px, cursor.py);
      event.preventDefault();
    }
  });
  canvas.addEventListener("blur", () => { state.cursor = null; $("tooltip").hidden = true; drawMap(); });
  new ResizeObserver(() => resizeMap()).observe($("map-wrap"));

  // ---------------------------------------------------------------- picking and decoding

  /** Decodes the z under map pixel (px, py): the server blends the nearest points' z (POST /locate). */
  async function pickAt(px, py) {
    if (!state.view) return;
    const [x, y] = state.view.toData(px, py);
    const generation = ++state.generation;
    try {
      const located = await postJSON(runPath(state.run, "locate"), { x, y });
      if (generation !== state.generation) return;
      const nearest = located.neighbours[0];
      setPick({ z0: located.z, x, y, nearest, neighbours: located.neighbours, weights: located.weights,
        source: "map" });
    } catch (err) {
      fail("locating the click", err);
    }
  }

  function setPick(pick) {
    state.pick = pick;
    resetSliderValues();
    for (const id of ["set-a", "set-b", "reset-sliders"]) $(id).disabled = false;
    $("sliders").disabled = false;
    decodeCurrent();
    drawMap();
    showComparison(pick.nearest);
  }

  /** Decodes the picked z moved by the sliders (coalesced) and says what is shown. */
  function decodeCurrent() {
    const z = currentZ();
    describePick();
    decoder.push({ generation: state.generation, z });
  }

  function describePick() {
    const pick = state.pick;
    const info = $("picked-info");
    if (pick.source === "map") {
      const weight = pick.weights ? ` (weight ${pick.weights[0].toFixed(2)})` : "";
      info.textContent = `Blend of the ${pick.neighbours.length} nearest points' z; nearest: #${pick.nearest}`
        + `${labelOf(pick.nearest)}${weight}.`;
    } else {
      info.textContent = pick.source;
    }
    const moved = sliderOffsets().some((v) => v !== 0);
    if (moved) info.textContent += " Moved by the sliders.";
    if (state.clipped) info.textContent += ` |z| held at the server's bound ${currentRun().max_norm.toFixed(1)}.`;
  }

  function labelOf(id) {
    const map = state.map;
    if (!map || !map.color) return "";
    const i = map.index.indexOf(id);
    return i >= 0 ? ` (${map.color_names[map.color[i]]})` : "";
  }

  const decoder = new LatestOnly(
    async ({ z }) => {
      state.stats.decodeSent += 1;
      return postBlob(runPath(state.run, "decode"), { z });
    },
    (blob, payload) => {
      if (payload.generation !== state.generation) return;
      showDecoded(blob);
    },
    (err) => fail("decoding", err),
  );

  function showDecoded(blob) {
    state.decodedBlob = blob;
    const img = $("decoded");
    const old = img.src;
    img.src = URL.createObjectURL(blob);
    img.hidden = false;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    state.stats.decodeShown += 1;
    img.dataset.shown = String(state.stats.decodeShown);
    if ($("status").classList.contains("error")) say("Decoded.");
  }

  // ---------------------------------------------------------------- sliders

  function buildSliders() {
    const { pca, pca_std: std, attributes } = state.directions;
    $("pca-sliders").replaceChildren(...pca.map((_, i) => slider(
      `pc-${i}`, `PC ${i + 1}`, -3, 3, 0.05, (v) => `${v >= 0 ? "+" : ""}${v.toFixed(2)} σ`,
      `along the ${ordinal(i + 1)} principal direction of z, in its standard deviations (σ = ${std[i].toFixed(3)})`,
    )));
    const names = Object.keys(attributes || {});
    $("attribute-sliders").replaceChildren(...names.map((name, i) => slider(
      `attr-${i}`, name, -2, 2, 0.05, (v) => `${v >= 0 ? "+" : ""}${v.toFixed(2)}`,
      `along the attribute vector of “${name}” (mean z with it minus mean z without it)`,
    )));
    $("sliders").hidden = pca.length + names.length === 0;
  }

  const ordinal = (n) => `${n}${["th", "st", "nd", "rd"][n % 100 > 10 && n % 100 < 14 ? 0 : Math.min(n % 10, 4) % 4] || "th"}`;

  function slider(id, name, min, max, step, format, description) {
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = name;
    label.title = description;
    const input = Object.assign(document.createElement("input"), { type: "range", id, min, max, step, value: 0 });
    input.setAttribute("aria-description", description);
    const output = document.createElement("output");
    output.htmlFor = id;
    output.textContent = format(0);
    input.addEventListener("input", () => {
      output.textContent = format(Number(input.value));
      if (!state.pick) return;
      decodeCurrent();
    });
    input.addEventListener("dblclick", () => { input.value = "0"; input.dispatchEvent(new Event("input")); });
    row.append(label, input, output);
    return row;
  }

  function sliderOffsets() {
    return [...document.querySelectorAll("#sliders input[type=range]")].map((input) => Number(input.value));
  }

  function resetSliderValues() {
    for (const input of document.querySelectorAll("#sliders input[type=range]")) {
      input.value = "0";
      input.nextElementSibling.textContent = input.id.startsWith("pc-") ? "+0.00 σ" : "+0.00";
    }
  }

  /** z = z0 + Σ s_i σ_i pca_i + Σ t_a attribute_a, shrunk onto the server's |z| bound if it goes past it. */
  function currentZ() {
    const { pca, pca_std: std, attributes } = state.directions;
    const z = state.pick.z0.slice();
    pca.forEach((direction, i) => {
      const s = Number($(`pc-${i}`).value) * std[i];
      if (s !== 0) direction.forEach((d, j) => { z[j] += s * d; });
    });
    Object.values(attributes || {}).forEach((direction, i) => {
      const t = Number($(`attr-${i}`).value);
      if (t !== 0) direction.forEach((d, j) => { z[j] += t * d; });
    });
    const norm = Math.hypot(...z);
    const bound = currentRun().max_norm * 0.999;
    state.clipped = norm > bound;
    return state.clipped ? z.map((v) => (v * bound) / norm) : z;
  }

  $("reset-sliders").addEventListener("click", () => {
    if (!state.pick) return;
    resetSliderValues();
    decodeCurrent();
  });

  function resetPickPanels() {
    resetSliderValues();
    for (const id of ["set-a", "set-b", "reset-sliders", "interpolate"]) $(id).disabled = true;
    $("sliders").disabled = true;
    $("decoded").hidden = true;
    $("picked-info").textContent = "Click on the map to pick a point.";
    $("strip").hidden = true;
    $("a-info").replaceChildren("A: —");
    $("b-info").replaceChildren("B: —");
    $("prior-strip").replaceChildren();
    $("prior-summary").textContent = "";
    $("prior-clear").disabled = true;
    $("compare").replaceChildren();
  }

  // ---------------------------------------------------------------- interpolation

  function setEnd(which) {
    if (!state.pick) return;
    const pick = state.pick;
    const moved = sliderOffsets().some((v) => v !== 0);
    const text = pick.source === "map" ? `near #${pick.nearest}${moved ? " + sliders" : ""}` : pick.source;
    const end = { z: currentZ(), x: pick.x, y: pick.y, text };
    state[which] = end;
    const tag = $(`${which}-info`);
    const content = [`${which.toUpperCase()}: `];
    if (state.decodedBlob) {
      const thumb = Object.assign(document.createElement("img"), {
        src: URL.createObjectURL(state.decodedBlob), alt: "", className: "tag-thumb",
      });
      content.push(thumb);
    }
    content.push(` ${text}`);
    const previous = tag.querySelector("img");
    if (previous) URL.revokeObjectURL(previous.src);
    tag.replaceChildren(...content);
    $("interpolate").disabled = !(state.a && state.b);
    drawMap();
  }

  $("set-a").addEventListener("click", () => setEnd("a"));
  $("set-b").addEventListener("click", () => setEnd("b"));

  $("interpolate").addEventListener("click", async () => {
    if (!state.a || !state.b) return;
    const steps = clampInt($("steps"), 2, 16);
    const mode = $("spherical").checked ? "spherical" : "linear";
    const run = state.run;
    const button = $("interpolate");
    button.disabled = true;
    try {
      const blob = await postBlob(runPath(state.run, "interpolate"), { a: state.a.z, b: state.b.z, steps, mode });
      if (run !== state.run || !state.a || !state.b) return;  // the run was switched meanwhile
      const strip = $("strip");
      const old = strip.src;
      strip.src = URL.createObjectURL(blob);
      strip.alt = `${mode} interpolation in ${steps} steps from A (${state.a.text}) to B (${state.b.text})`;
      strip.dataset.steps = String(steps);
      strip.hidden = false;
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      say(`${mode[0].toUpperCase()}${mode.slice(1)} interpolation, ${steps} steps.`);
    } catch (err) {
      fail("interpolating", err);
    } finally {
      button.disabled = !(state.a && state.b);
    }
  });

  /** The input's value as an integer within [lo, hi], written back so the user sees what was used. */
  function clampInt(input, lo, hi) {
    const value = Math.min(Math.max(Math.round(Number(input.value) || lo), lo), hi);
    input.value = String(value);
    return value;
  }

  // ---------------------------------------------------------------- prior samples

  function showPriorR() {
    const uniform = $("prior-dist").value === "uniform";
    $("r-label").hidden = !uniform;
    $("prior-r-value").textContent = Number($("prior-r").value).toFixed(2);
  }

  const priorSampler = new LatestOnly(
    async (body) => {
      state.stats.priorSent += 1;
      return postJSON(runPath(state.run, "prior"), body);
    },
    (answer, payload) => {
      if (payload.generation !== state.generation) return;
      showPrior({ ...answer, dist: payload.dist, r: payload.r });
    },
    (err) => fail("sampling the prior", err),
  );

  function samplePrior(newSeed) {
    if (!state.map) return;
    if (newSeed) state.priorSeed += 1;
    const dist = $("prior-dist").value;
    const body = { dist, n: clampInt($("prior-n"), 1, 64), seed: state.priorSeed };
    if (dist === "uniform") body.r = Number($("prior-r").value);
    priorSampler.push({ ...body, generation: state.generation });
  }

  function showPrior(prior) {
    state.prior = prior;
    const list = $("prior-strip");
    list.replaceChildren(...prior.images.map((src, i) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "thumb";
      button.title = "Pick this sample (its z) for the sliders and interpolation";
      const img = Object.assign(document.createElement("img"), { src, alt: `Prior sample ${i + 1}` });
      const caption = document.createElement("span");
      caption.textContent = `d ${prior.distances[i].toFixed(2)}`;
      button.append(img, caption);
      button.addEventListener("click", () => {
        state.generation += 1;
        setPick({ z0: prior.z[i], x: prior.x[i], y: prior.y[i], nearest: prior.neighbours[i],
          source: `Prior sample ${i + 1}; nearest encoded image #${prior.neighbours[i]}, z-distance `
            + `${prior.distances[i].toFixed(2)}.` });
      });
      item.append(button);
      return item;
    }));
    const sorted = [...prior.distances].sort((p, q) => p - q);
    const median = sorted[Math.floor(sorted.length / 2)];
    const what = prior.dist === "uniform" ? `uniform, r = ${prior.r.toFixed(2)}` : "N(0, I)";
    const spacing = prior.reference_distance > 0
      ? ` (encoded images are typically ${prior.reference_distance.toFixed(2)} apart)` : "";
    $("prior-summary").textContent = `${prior.images.length} samples from ${what}. z-distance to the nearest `
      + `encoded image: median ${median.toFixed(2)}, max ${sorted[sorted.length - 1].toFixed(2)}${spacing}. `
      + `Ringed on the map at that image (${new Set(prior.neighbours).size} distinct images: samples `
      + "sharing one share its ring); bigger ring = farther (a hole).";
    $("prior-clear").disabled = false;
    drawMap();
  }

  $("prior-sample").addEventListener("click", () => samplePrior(true));
  $("prior-dist").addEventListener("change", () => { showPriorR(); samplePrior(false); });
  $("prior-r").addEventListener("input", () => { showPriorR(); samplePrior(false); });
  $("prior-clear").addEventListener("click", () => {
    state.prior = null;
    $("prior-strip").replaceChildren();
    $("prior-summary").textContent = "";
    $("prior-clear").disabled = true;
    drawMap();
  });

  // ---------------------------------------------------------------- runs side by side

  async function showComparison(id) {
    const box = $("compare");
    const several = state.runs.length > 1;
    $("compare-title").textContent = several ? "Same image in each run" : "Nearest image and its neighbours";
    if (several && !state.comparable) {
      $("compare-info").textContent = "These runs do not share dataset and split, so their images cannot be "
        + "matched: no side-by-side view.";
      box.replaceChildren();
      return;
    }
    if (id === undefined || id === null) { box.replaceChildren(); return; }
    const real = Object.assign(document.createElement("img"), {
      src: runPath(state.run, `image/${id}`), alt: `Image #${id}`, className: "compare-real",
    });
    $("compare-info").replaceChildren(real, `Image #${id}${labelOf(id)}: each run's decode of it (left), then the `
      + `${COMPARE_K} images nearest to it in that run's z-space.`);
    const generation = state.generation;
    const rows = state.runs.map((run) => {
      const row = document.createElement("div");
      row.className = "compare-run";
      const name = document.createElement("span");
      name.className = "compare-name";
      name.title = `${run.name}: ${run.kind.toUpperCase()}, z_dim ${run.z_dim}`;
      const kind = document.createElement("small");
      kind.textContent = `${run.kind.toUpperCase()}, z ${run.z_dim}`;
      name.append(run.name, kind);
      const decoded = Object.assign(document.createElement("img"), {
        src: runPath(run.id, `reconstruction/${id}`), alt: `Image #${id} decoded by ${run.name}`,
        className: "compare-decoded",
      });
      decoded.addEventListener("error", () => fail(`the decode of #${id} by ${run.name}`, new Error("did not load")));
      const neighbours = document.createElement("span");
      neighbours.className = "neighbours";
      neighbours.setAttribute("aria-label", `Nearest neighbours in ${run.name}`);
      row.append(name, decoded, neighbours);
      getJSON(runPath(run.id, `neighbours/${id}?k=${COMPARE_K}`)).then((answer) => {
        if (generation !== state.generation) return;
        neighbours.replaceChildren(...answer.neighbours.map((q, j) => Object.assign(document.createElement("img"), {
          src: runPath(run.id, `image/${q}`), alt: `Neighbour #${q}`,
          title: `#${q}${labelOf(q)}, z-distance ${answer.distances[j].toFixed(2)}`,
        })));
      }).catch((err) => fail(`neighbours in ${run.name}`, err));
      return row;
    });
    box.replaceChildren(...rows);
  }

  // ---------------------------------------------------------------- start

  loadRuns().catch((err) => fail("loading the runs", err));
})();
