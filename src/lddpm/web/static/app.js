// The page of `lddpm serve`: pick a model and a photo, POST it to api/upscale, follow the
// JSON lines it streams back (queued, loading, started, progress, done | error), then show
// the before/after slider.
"use strict";

const $ = (id) => document.getElementById(id);
const escapeHtml = (text) => String(text).replace(/[&<>"]/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
let info = null;   // GET api/info: the limits (and the default model)
let models = {};   // GET api/models: name -> description, scale, samplers, defaults
let file = null;   // the chosen File
let result = null; // the last "done" event (its samples back the tabs and the download)
let finished = false; // whether the current request got its "done" event

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(text, done, total) {
  $("status-box").hidden = false;
  $("status").textContent = text;
  const bar = $("progress");
  if (total) { bar.max = total; bar.value = done; } else { bar.removeAttribute("value"); }
}

async function loadInfo() {
  const [infoRes, modelsRes] = await Promise.all([fetch("api/info"), fetch("api/models")]);
  info = await infoRes.json();
  const list = await modelsRes.json();
  $("samples").max = info.max_samples;
  for (const m of list.models) {
    models[m.name] = m;
    const option = new Option(m.name, m.name, false, m.name === list.default);
    option.title = m.description;
    $("model").add(option);
  }
  onModelChange();
}

// A model brings its own samplers (lddpm only with the gan part) and its defaults.
function onModelChange() {
  const m = models[$("model").value];
  $("model-name").textContent = m.name;
  $("model-scale").textContent = `x${m.scale}`;
  $("model").title = m.description;
  $("model-help").textContent = m.description;
  $("sampler").replaceChildren(...Object.keys(m.samplers).map(
    (name) => new Option(name, name, false, name === m.default_sampler)));
  onSamplerChange();
}

// ddpm and lddpm run a fixed number of steps: the field shows it and is locked.
function onSamplerChange() {
  const s = models[$("model").value].samplers[$("sampler").value];
  const steps = $("steps");
  steps.min = s.min_steps;
  steps.max = s.max_steps;
  steps.value = s.default_steps;
  steps.disabled = s.min_steps === s.max_steps;
}

function chooseFile(chosen) {
  showError("");
  file = chosen || null;
  $("run").disabled = !file;
  if (!file) return;
  if (file.size > info.max_upload_bytes) {
    const mb = (info.max_upload_bytes / 2 ** 20).toFixed(0);
    showError(`${file.name}: the file is over this server's upload limit of ${mb} MB`);
    $("run").disabled = true;
    return;
  }
  const preview = $("input-preview");
  preview.onload = () => {
    $("input-info").textContent = `${file.name}: ${preview.naturalWidth} × ${preview.naturalHeight}`;
  };
  preview.onerror = () => { $("input-info").textContent = `${file.name} (no preview)`; };
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-text").hidden = true;
}

async function upscale() {
  showError("");
  $("run").disabled = true;
  finished = false;
  setStatus("uploading...");
  const query = new URLSearchParams({
    model: $("model").value, sampler: $("sampler").value, steps: $("steps").value, seed: $("seed").value,
    samples: $("samples").value, name: file.name,
  });
  try {
    const res = await fetch(`api/upscale?${query}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" },
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error || `the server answered ${res.status}`);
    }
    await readLines(res, onEvent);
    if (!finished) throw new Error("the server closed the connection before the result");
  } catch (err) {
    showError(err.message === "Failed to fetch" ? "cannot reach the server" : err.message);
    $("status-box").hidden = true;
  } finally {
    $("run").disabled = !file;
  }
}

// Splits the streamed body into JSON lines.
async function readLines(res, onLine) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (line.trim()) onLine(JSON.parse(line));
    }
  }
}

function onEvent(ev) {
  if (ev.event === "queued") {
    setStatus(ev.position ? `waiting: ${ev.position} request(s) ahead` : "starting...");
  } else if (ev.event === "loading") {
    setStatus(`loading the model ${ev.model}...`);
  } else if (ev.event === "started") {
    setStatus("sampling...", 0, ev.total);
  } else if (ev.event === "progress") {
    setStatus(`network evaluation ${ev.done} of ${ev.total}`, ev.done, ev.total);
  } else if (ev.event === "done") {
    result = ev;
    finished = true;
    setStatus(`done in ${ev.seconds.toFixed(1)} s`, 1, 1);
    showResult(ev);
  } else if (ev.event === "error") {
    throw new Error(ev.message);
  }
}

function showResult(ev) {
  $("result-before").src = ev.bicubic;
  $("sample-tabs").replaceChildren(...ev.samples.map((url, k) => {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.textContent = `sample ${k + 1}`;
    tab.onclick = () => showSample(k);
    return tab;
  }));
  $("sample-tabs").hidden = ev.samples.length < 2;
  const [w, h] = ev.size;
  // as wide as fits, but never taller than most of the window: the whole image stays in view
  $("compare").style.maxWidth = `calc(68vh * ${w / h})`;
  $("result-stats").innerHTML =
    `<span id="result-size">${w} × ${h}</span> (x${ev.scale} of ${ev.lr_size[0]} × ${ev.lr_size[1]}) · ` +
    `${escapeHtml(ev.model)}, ${ev.sampler}, ${ev.steps} steps, seed ${ev.seed} · ` +
    `<b id="result-seconds">${ev.seconds.toFixed(2)} s</b> · ` +
    `<b id="result-evaluations">${ev.evaluations}</b> network evaluations`;
  showSample(0);
  $("result-panel").hidden = false;
}

function showSample(k) {
  const url = result.samples[k];
  $("result-after").src = url;
  const stem = result.name.replace(/\.[^.]*$/, "");
  const suffix = result.samples.length > 1 ? `_s${k}` : "";
  $("download").href = url;
  $("download").download = `${stem}_x${result.scale}${suffix}.png`;
  [...$("sample-tabs").children].forEach((tab, i) => tab.classList.toggle("active", i === k));
}

function onSlide() {
  const pct = $("slider").value;
  $("result-after").style.clipPath = `inset(0 0 0 ${pct}%)`;
  $("divider").style.left = `${pct}%`;
}

function init() {
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  zone.addEventListener("dragenter", () => zone.classList.add("over"));
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", () => zone.classList.remove("over"));
  // A file dropped beside the zone would make the browser leave the page to show it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => { if (e.target !== $("file-input")) e.preventDefault(); });
  $("model").addEventListener("change", onModelChange);
  $("sampler").addEventListener("change", onSamplerChange);
  $("run").addEventListener("click", upscale);
  $("slider").addEventListener("input", onSlide);
  loadInfo().catch(() => showError("cannot reach the server"));
}

init();
