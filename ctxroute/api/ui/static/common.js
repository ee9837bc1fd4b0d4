// ctxroute web page, shared parts: state, DOM helper, API key, errors, fetch and SSE.
// Plain JavaScript over the REST API (docs/API.md); no build step, no network beyond this
// server. The API key lives in sessionStorage only. Loaded first (classic scripts share
// their top-level names).
"use strict";

const KEY_STORE = "ctxroute.apiKey";
const TERMINAL = new Set(["succeeded", "partial", "failed", "interrupted"]);
const UPLOAD_PARALLEL = 3;

const state = {
  collection: null, // selected collection name
  collections: [],
  documents: [],
  citations: [], // citations of the current answer
  docCache: new Map(), // "collection/doc_id" -> {text, page_starts, title, ...}
  activeCitation: null,
  answerCollection: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// --- API key ------------------------------------------------------------------------
function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

function showKeyState() {
  $("key-state").textContent = apiKey() ? "key set for this tab" : "no key";
}

// --- errors shown like the API's {code, message, request_id} --------------------------
class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || "error";
    this.requestId = body.request_id || "";
  }
  describe() {
    const rid = this.requestId ? ` (request ${this.requestId})` : "";
    return `${this.status} ${this.code}: ${this.message}${rid}`;
  }
}

function showError(err, where) {
  const box = $("alert");
  const text = err instanceof ApiError ? err.describe() : String(err && err.message ? err.message : err);
  box.replaceChildren(el("strong", {}, where ? `${where}: ` : ""), text);
  box.hidden = false;
  box.dataset.status = err instanceof ApiError ? String(err.status) : "";
  if (err instanceof ApiError && err.status === 401) {
    $("api-key").focus();
  }
}

function clearError() {
  $("alert").hidden = true;
  $("alert").replaceChildren();
  $("alert").dataset.status = "";
}

function authHeaders(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function api(method, path, { json, form, raw } = {}) {
  const init = { method, headers: authHeaders() };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    let body = {};
    try { body = await resp.json(); } catch (e) { body = { message: resp.statusText }; }
    throw new ApiError(resp.status, body);
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  return resp.json();
}

const enc = encodeURIComponent;

// --- SSE over fetch (EventSource cannot POST or send a key) ---------------------------------
async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}
