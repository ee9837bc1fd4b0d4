// ctxroute web page: the source viewer (cited spans highlighted) and the evaluation reports.
"use strict";

// --- source viewer ------------------------------------------------------------------
async function fetchDocument(collection, docId) {
  const key = `${collection}/${docId}`;
  if (!state.docCache.has(key)) {
    const doc = await api("GET", `/v1/collections/${enc(collection)}/documents/${enc(docId)}/text`);
    state.docCache.set(key, doc);
  }
  return state.docCache.get(key);
}

function pageOf(doc, offset) {
  let page = null;
  doc.page_starts.forEach((s, i) => { if (s <= offset) page = i + 1; });
  return page;
}

// Text split at every span and page boundary; a segment inside any cited span of this
// document is a <mark> (those of the opened citation also get class "active").
function renderSource(doc, spans, active) {
  const box = $("source-text");
  box.replaceChildren();
  const cuts = new Set([0, doc.text.length]);
  for (const s of spans) { cuts.add(s.start); cuts.add(s.end); }
  for (const p of doc.page_starts) if (p > 0 && p < doc.text.length) cuts.add(p);
  const points = Array.from(cuts).filter((x) => x >= 0 && x <= doc.text.length).sort((a, b) => a - b);
  const pageStarts = new Set(doc.page_starts);
  let firstActive = null;
  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i];
    const b = points[i + 1];
    if (pageStarts.has(a)) box.append(el("span", { class: "pagebreak", dataset: { page: String(doc.page_starts.indexOf(a) + 1) } }));
    const covering = spans.filter((s) => s.start <= a && b <= s.end);
    const text = doc.text.slice(a, b);
    if (!covering.length) { box.append(text); continue; }
    const isActive = active && active.start <= a && b <= active.end;
    const mark = el("mark", {
      class: isActive ? "active" : "",
      dataset: { cites: covering.map((s) => s.n).join(",") },
      title: `cited as ${covering.map((s) => `[${s.n}]`).join(" ")}`,
    }, text);
    box.append(mark);
    if (isActive && !firstActive) firstActive = mark;
  }
  return firstActive;
}

async function openCitation(index) {
  const c = state.citations[index];
  if (!c) return;
  state.activeCitation = index;
  const collection = state.answerCollection;
  let doc;
  try {
    doc = await fetchDocument(collection, c.doc_id);
  } catch (err) { showError(err, "Opening the source"); return; }
  const spans = state.citations.map((x, i) => ({ ...x, n: i + 1 })).filter((x) => x.doc_id === c.doc_id);
  const first = renderSource(doc, spans, c);
  const page = c.page || pageOf(doc, c.start);
  $("source-meta").replaceChildren(
    el("strong", {}, doc.title || doc.id), ` (${doc.format}) — citation [${index + 1}], characters ${c.start}–${c.end}`,
    page ? `, page ${page}` : "", `. ${spans.length} cited sentence${spans.length === 1 ? "" : "s"} of this answer highlighted.`);
  document.querySelectorAll(".chip").forEach((b) => b.setAttribute("aria-current", String(Number(b.dataset.index) === index)));
  $("source").scrollIntoView({ block: "start" });
  if (first) {
    first.scrollIntoView({ block: "center" });
    first.tabIndex = -1;
    first.focus({ preventScroll: true });
  }
}

// --- evaluation reports -----------------------------------------------------------------
async function loadRuns() {
  const select = $("run-select");
  select.replaceChildren();
  let data;
  try { data = await api("GET", "/v1/runs"); } catch (err) {
    $("runs-state").textContent = err instanceof ApiError ? err.describe() : String(err);
    return;
  }
  if (!data.configured) {
    $("runs-state").textContent = "No runs directory: start the server with CTXROUTE_RUNS_DIR=<folder with eval report outputs>.";
    return;
  }
  $("runs-state").textContent = data.runs.length ? `${data.runs.length} report folder(s).` : "The runs directory holds no report folders.";
  select.append(el("option", { value: "" }, "— choose a run —"));
  for (const r of data.runs) select.append(el("option", { value: r.id }, r.id));
}

async function showRun(id) {
  const summary = $("run-summary");
  const plots = $("run-plots");
  summary.replaceChildren();
  for (const img of plots.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  plots.replaceChildren();
  if (!id) return;
  let run;
  try { run = await api("GET", `/v1/runs/${id.split("/").map(enc).join("/")}`); } catch (err) { showError(err, "Opening the run"); return; }
  if (run.summary_md) window.renderMarkdown(run.summary_md, summary);
  else if (run.summary_json) summary.append(el("pre", {}, JSON.stringify(run.summary_json, null, 2)));
  const order = (n) => (n === "pareto.png" ? 0 : n === "route_mix.png" ? 1 : 2);
  const pngs = run.files.filter((f) => f.endsWith(".png")).sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  for (const name of pngs) {
    try {
      const resp = await api("GET", `/v1/runs/${id.split("/").map(enc).join("/")}/files/${enc(name)}`, { raw: true });
      const url = URL.createObjectURL(await resp.blob());
      const label = name.replace(/\.png$/, "").replace(/_/g, " ");
      plots.append(el("figure", {}, el("img", { src: url, alt: `${label} plot of run ${id}` }), el("figcaption", {}, label)));
    } catch (err) { showError(err, `Loading ${name}`); }
  }
}
