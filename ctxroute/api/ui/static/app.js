// ctxroute web page: collections, uploads, asking, start-up (common.js and viewer.js first).
"use strict";

// --- collections -------------------------------------------------------------------
async function loadCollections() {
  let data;
  try {
    data = await api("GET", "/v1/collections");
  } catch (err) {
    state.collections = [];
    renderCollections();
    $("collections-empty").hidden = true;
    if (err instanceof ApiError && err.status === 401) {
      $("key-state").textContent = apiKey() ? "key set for this tab: refused by the server" : "this server needs a key";
    }
    showError(err, "Listing collections");
    return;
  }
  state.collections = data.collections;
  if (state.collection && !state.collections.some((c) => c.name === state.collection)) state.collection = null;
  if (!state.collection && state.collections.length) state.collection = state.collections[0].name;
  renderCollections();
  await loadDocuments();
}

function renderCollections() {
  const list = $("collection-list");
  list.replaceChildren();
  $("collections-empty").hidden = state.collections.length > 0;
  for (const c of state.collections) {
    const selected = c.name === state.collection;
    const pick = el("button", {
      type: "button", class: "pick", "aria-pressed": String(selected),
      onclick: () => { state.collection = c.name; renderCollections(); loadDocuments(); },
    }, el("span", { class: "name" }, c.name), ` ${c.documents} document${c.documents === 1 ? "" : "s"} · ${c.chunks} chunks · ${c.tokens.toLocaleString()} tokens`);
    const del = el("button", { type: "button", class: "danger", "aria-label": `Delete collection ${c.name}` }, "Delete");
    del.addEventListener("click", async () => {
      if (del.dataset.armed !== "1") {
        del.dataset.armed = "1";
        del.textContent = `Really delete ${c.name}?`;
        return;
      }
      try {
        await api("DELETE", `/v1/collections/${enc(c.name)}`);
        clearError();
        if (state.collection === c.name) state.collection = null;
        await loadCollections();
      } catch (err) { showError(err, `Deleting ${c.name}`); }
    });
    del.addEventListener("blur", () => { del.dataset.armed = ""; del.textContent = "Delete"; });
    list.append(el("li", { class: selected ? "selected" : "" }, pick, " ", del));
  }
  const target = state.collection ? `into ${state.collection}` : "(create a collection first)";
  $("upload-target").textContent = target;
  $("ask-target").textContent = state.collection ? `in ${state.collection}` : "";
}

async function loadDocuments() {
  const box = $("doc-list");
  box.replaceChildren();
  state.documents = [];
  if (!state.collection) return;
  try {
    const data = await api("GET", `/v1/collections/${enc(state.collection)}/documents`);
    state.documents = data.documents;
  } catch (err) { showError(err, "Listing documents"); return; }
  if (!state.documents.length) box.append(el("p", { class: "muted" }, "No documents yet."));
  for (const d of state.documents) {
    const id = `scope-${d.id}`;
    const pages = d.pages ? `, ${d.pages} pages` : "";
    box.append(el("div", { class: "check" },
      el("input", { type: "checkbox", id, value: d.id }),
      el("label", { htmlFor: id }, `${d.title || d.id} `, el("span", { class: "muted" }, `(${d.format}, ${d.chars.toLocaleString()} characters${pages})`))));
  }
}

async function createCollection(ev) {
  ev.preventDefault();
  const name = $("new-name").value.trim();
  try {
    await api("POST", "/v1/collections", { json: { name } });
    clearError();
    $("new-name").value = "";
    state.collection = name;
    await loadCollections();
  } catch (err) { showError(err, `Creating ${name}`); }
}

// --- uploads: one background job per file, progress from /v1/jobs/{id} -------------------
function uploadRow(file) {
  const bar = el("progress", { max: 1, value: 0, "aria-label": `progress of ${file.name}` });
  const status = el("span", { class: "status" }, "waiting");
  const errors = el("ul", { class: "file-errors" });
  const li = el("li", { dataset: { file: file.name } }, el("span", { class: "name" }, file.name), " ", bar, " ", status, errors);
  $("upload-list").prepend(li);
  return { li, bar, status, errors };
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function uploadOne(collection, file, row) {
  const form = new FormData();
  form.append("files", file, file.name);
  row.status.textContent = "uploading";
  try {
    const resp = await api("POST", `/v1/collections/${enc(collection)}/files?background=true`, { form, raw: true });
    let job = await resp.json();
    if (resp.status === 201) { // a synchronous answer (IngestOut)
      finishRow(row, { status: job.errors.length ? "partial" : "succeeded", errors: job.errors, documents_added: job.documents.map((d) => d.id) });
      return;
    }
    while (!TERMINAL.has(job.status)) {
      row.bar.value = job.progress;
      row.status.textContent = `${job.status}: ${job.stage} ${Math.round(job.progress * 100)}%`;
      await sleep(250);
      job = await api("GET", `/v1/jobs/${enc(job.id)}`);
    }
    finishRow(row, job);
  } catch (err) {
    row.li.classList.add("failed");
    row.bar.value = 0;
    row.status.textContent = "rejected";
    row.errors.append(el("li", {}, err instanceof ApiError ? err.describe() : String(err)));
  }
}

function finishRow(row, job) {
  row.bar.value = 1;
  const n = job.documents_added.length;
  row.status.textContent = `${job.status}: ${n} document${n === 1 ? "" : "s"} added`;
  row.li.classList.add(job.status === "succeeded" ? "ok" : "failed");
  for (const e of job.errors) row.errors.append(el("li", {}, `${e.file}: ${e.message}`));
}

async function uploadFiles(files) {
  if (!files.length) return;
  if (!state.collection) { showError("Create or choose a collection before uploading.", "Upload"); return; }
  clearError();
  const collection = state.collection;
  const queue = Array.from(files).map((f) => ({ file: f, row: uploadRow(f) }));
  const workers = [];
  for (let w = 0; w < Math.min(UPLOAD_PARALLEL, queue.length); w++) {
    workers.push((async () => {
      while (queue.length) {
        const { file, row } = queue.shift();
        await uploadOne(collection, file, row);
      }
    })());
  }
  await Promise.all(workers);
  await loadCollections();
}

function setupDrop() {
  const drop = $("drop");
  const input = $("file-input");
  input.addEventListener("change", () => { uploadFiles(input.files).finally(() => { input.value = ""; }); });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (ev) => { ev.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (ev) => uploadFiles(ev.dataTransfer.files));
}

// --- asking: the answer streams as server-sent events ----------------------------------------
function resetResult() {
  $("result").hidden = false;
  $("decision-route").textContent = "…";
  $("decision-policy").textContent = "";
  $("decision-reasons").replaceChildren();
  $("estimates").tBodies[0].replaceChildren();
  $("decision-fallbacks").textContent = "";
  $("answer").replaceChildren();
  $("answer").dataset.done = "";
  $("answer").dataset.route = "";
  $("notices").replaceChildren();
  $("citations").replaceChildren();
  $("citations-empty").hidden = false;
  $("usage").textContent = "";
  state.citations = [];
  state.activeCitation = null;
}

function notice(text, kind = "warning") {
  $("notices").append(el("li", { class: kind }, text));
}

function renderDecision(d) {
  $("decision-route").textContent = d.route;
  $("decision-policy").textContent = `(policy: ${d.policy})`;
  const reasons = $("decision-reasons");
  reasons.replaceChildren(...d.reasons.map((r) => el("li", {}, r)));
  const body = $("estimates").tBodies[0];
  body.replaceChildren();
  const max = Math.max(1, ...d.estimates.map((e) => e.prompt_tokens));
  for (const e of d.estimates) {
    const pct = Math.max(0.5, (100 * e.prompt_tokens) / max);
    const bar = el("span", { class: "bar" + (e.feasible ? "" : " infeasible"), "aria-hidden": "true" });
    bar.style.width = `${pct}%`;
    const row = el("tr", { class: e.route === d.route ? "chosen" : "" },
      el("th", { scope: "row" }, e.route + (e.route === d.route ? " (chosen)" : "")),
      el("td", {}, el("span", { class: "bar-track" }, bar), " ", e.prompt_tokens.toLocaleString()),
      el("td", {}, `$${e.cost.toFixed(4)}`),
      el("td", {}, e.feasible ? "yes" : `no: ${e.why_not}`));
    body.append(row);
  }
  $("decision-fallbacks").textContent = d.fallbacks.length ? `Fallbacks if it fails: ${d.fallbacks.join(" → ")}` : "";
}

function addCitation(c) {
  const n = state.citations.length + 1;
  state.citations.push(c);
  $("citations-empty").hidden = true;
  const where = c.page ? `, page ${c.page}` : "";
  const chip = el("button", {
    type: "button", class: "chip", dataset: { index: String(n - 1), doc: c.doc_id, start: String(c.start), end: String(c.end) },
    title: c.quote, onclick: () => openCitation(n - 1),
  }, `[${n}] ${c.title || c.doc_id}${where}`);
  $("citations").append(el("li", {}, chip, el("span", { class: "quote" }, ` “${c.quote}”`)));
}

function renderFinalAnswer(out) {
  // the final text numbers verified citations [1], [2] ... in the order of out.citations
  const box = $("answer");
  box.replaceChildren();
  const re = /\[(\d+)\]/g;
  let last = 0;
  let m;
  while ((m = re.exec(out.answer)) !== null) {
    const i = Number(m[1]) - 1;
    if (i < 0 || i >= out.citations.length) continue;
    box.append(out.answer.slice(last, m.index));
    box.append(el("button", { type: "button", class: "cite-ref", "aria-label": `citation ${i + 1}`, onclick: () => openCitation(i) }, `[${i + 1}]`));
    last = m.index + m[0].length;
  }
  box.append(out.answer.slice(last));
  box.dataset.done = "1";
  box.dataset.route = out.route_taken;
}

async function ask(ev) {
  ev.preventDefault();
  if (!state.collection) { showError("Create or choose a collection first.", "Ask"); return; }
  const question = $("question").value;
  const body = { question, stream: true };
  const route = $("route").value;
  if (route) body.route = route;
  const maxTokens = $("max-tokens").value;
  if (maxTokens) body.budget = { max_tokens: Number(maxTokens) };
  const ratio = $("compress-ratio").value;
  if (ratio) body.compress = { ratio: Number(ratio) };
  const docs = Array.from(document.querySelectorAll("#doc-list input:checked")).map((i) => i.value);
  if (docs.length) body.docs = docs;
  clearError();
  resetResult();
  state.answerCollection = state.collection;
  const button = $("ask-button");
  button.disabled = true;
  $("answer-state").textContent = "(streaming…)";
  try {
    const resp = await api("POST", `/v1/collections/${enc(state.collection)}/query`, { json: body, raw: true });
    const answer = $("answer");
    let final = null;
    for await (const { event, data } of sseEvents(resp)) {
      if (event === "decision") renderDecision(data);
      else if (event === "delta") answer.append(data.text);
      else if (event === "fallback") {
        notice(`The first attempt was dropped; falling back to ${data.route}.`, "fallback");
        if (data.discard_deltas) answer.replaceChildren();
      } else if (event === "citation") addCitation(data);
      else if (event === "done") final = data;
      else if (event === "error") throw new ApiError(data.status, data);
    }
    if (!final) throw new Error("the answer stream ended without a final answer; retry");
    finish(final);
  } catch (err) {
    $("answer-state").textContent = "(failed)";
    showError(err, "Ask");
  } finally {
    button.disabled = false;
  }
}

function finish(out) {
  // `done` carries every citation: keep the chips in sync even if an event was missed
  if (out.citations.length !== state.citations.length) {
    $("citations").replaceChildren();
    state.citations = [];
    out.citations.forEach(addCitation);
  }
  renderFinalAnswer(out);
  $("answer-state").textContent = out.cached ? "(from the answer cache)" : "";
  for (const f of out.fallbacks_taken) notice(`Fallback taken: ${f}`, "fallback");
  for (const w of out.warnings) notice(`Warning: ${w}`);
  if (out.abstained) notice(`Abstained: ${out.abstain_reason || "the documents do not answer this"}`);
  if (out.route_taken !== out.decision.route) notice(`Answered by route ${out.route_taken} (decided: ${out.decision.route}).`, "fallback");
  const lat = Object.entries(out.latency_ms).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(", ");
  $("usage").textContent = `Route taken: ${out.route_taken}. Tokens: ${out.usage.prompt_tokens.toLocaleString()} prompt + `
    + `${out.usage.completion_tokens.toLocaleString()} completion, cost $${out.usage.cost.toFixed(4)}, `
    + `${out.usage.calls.length} LLM call(s). Latency: ${lat}. Request ${out.request_id}.`;
}

// --- start ------------------------------------------------------------------------------
function refreshAll() {
  state.docCache.clear();
  loadCollections();
  loadRuns();
}

function init() {
  showKeyState();
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    $("api-key").value = "";
    showKeyState();
    clearError();
    refreshAll();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    showKeyState();
    state.collection = null;
    refreshAll();
  });
  $("create-form").addEventListener("submit", createCollection);
  $("ask-form").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) $("ask-form").requestSubmit();
  });
  $("run-select").addEventListener("change", (ev) => showRun(ev.target.value));
  setupDrop();
  refreshAll();
}

document.addEventListener("DOMContentLoaded", init);
