// The console: submit a workflow or a modifier, follow it live, browse recent jobs and the queue.
import { ApiError, apiKey, getJSON, postJSON, streamEvents } from "./api.js";
import { buildForm, readForm } from "./form.js";
import {
  NodeBars, isTerminal, showError, showHealth, showOutputs, showQueue, showQueuePosition, showRecent, showStatus,
} from "./view.js";

const $ = (sel) => document.querySelector(sel);
const EXAMPLE = {
  "1": { class_type: "EmptyImage", inputs: { width: 512, height: 512, batch_size: 1, color: 1122867 } },
  "2": { class_type: "SaveImage", inputs: { images: ["1", 0], filename_prefix: "console" } },
};
const bars = new NodeBars();
let modifiers = [];
let view = null; // { id, abort }: the job shown and the stream following it

function banner(text) {
  const el = $("#banner");
  el.textContent = text || "";
  el.hidden = !text;
}

function handleAuth(err) {
  if (err instanceof ApiError && err.status === 401) {
    banner("This gateway needs an API key: enter it at the top right and save.");
    return true;
  }
  return false;
}

// -- the job panel ------------------------------------------------------------------------
function startView(id) {
  if (view) view.abort.abort();
  view = { id, abort: new AbortController() };
  $("#job-id").textContent = id || "…";
  bars.reset();
  showError(null);
  showQueuePosition(null);
  $("#outputs").replaceChildren();
  return view;
}

async function showResult(result) {
  showStatus(result.status, result.message);
  showQueuePosition(null);
  if (result.status === "completed") bars.finishAll(result.progress && result.progress.nodes_total);
  showError(result.error);
  $("#cancel").disabled = true;
  await showOutputs(result);
  refreshLists();
}

function onEvent(current) {
  return async (name, data) => {
    if (current !== view) return; // another job was picked meanwhile
    if (!current.id) { // a new job: it shows in the lists at once
      current.id = data.request_id;
      $("#job-id").textContent = data.request_id;
      refreshLists();
    }
    if (name === "final_result") { await showResult(data.result); return; }
    showStatus(data.status, data.message);
    showQueuePosition(data.queue_position);
    if (data.progress) bars.update(data.progress);
    $("#cancel").disabled = false;
  };
}

async function follow(current, path, init = {}) {
  try {
    await streamEvents(path, { ...init, signal: current.abort.signal, onEvent: onEvent(current) });
  } catch (err) {
    if (err.name === "AbortError") return;
    if (!current.id) $("#job-id").textContent = "–";
    if (handleAuth(err)) return;
    showStatus(err instanceof ApiError ? "refused" : "error",
      err instanceof ApiError ? `the gateway refused the request (HTTP ${err.status})` : err.message);
    const failed = err instanceof ApiError && err.body && err.body.error; // a failed result (inputs refused)
    showError(failed ? err.body.error
      : err instanceof ApiError ? { message: err.message, errors: err.body && err.body.errors } : { message: String(err) });
    $("#cancel").disabled = true;
  }
}

function readWorkflow() {
  const text = $("#workflow-text").value.trim();
  if (!text) throw new Error("paste a workflow or pick its file first");
  let wf;
  try { wf = JSON.parse(text); } catch (e) { throw new Error(`the workflow is not valid JSON: ${e.message}`); }
  if (wf && wf.input && (wf.input.workflow_json || wf.input.modifier)) return wf.input; // a whole request body
  if (wf && Array.isArray(wf.nodes) && Array.isArray(wf.links)) {
    throw new Error("this is ComfyUI's UI format: export the workflow with Export (API) instead");
  }
  return { workflow_json: wf };
}

function payload() {
  const modifierTab = $("[data-tab=modifier]").classList.contains("active");
  const input = modifierTab
    ? { modifier: $("#modifier-select").value, modifications: readForm($("#modifier-form")) }
    : readWorkflow();
  if ($("#include-previews").checked) input.include_previews = true;
  const limit = $("#job-timeout").value;
  if (limit) input.timeout = Number(limit);
  return { input };
}

async function submit() {
  let body;
  try { body = payload(); } catch (err) {
    startView(null);
    showStatus("error", err.message);
    return;
  }
  const current = startView(null);
  showStatus("queued", "submitting…");
  await follow(current, "/generate/stream", { method: "POST", payload: body });
}

async function pick(id) {
  const current = startView(id);
  try {
    const result = await getJSON(`/result/${encodeURIComponent(id)}`);
    if (current !== view) return;
    if (isTerminal(result.status)) { await showResult(result); return; }
    showStatus(result.status, result.message);
    await follow(current, `/result/${encodeURIComponent(id)}/stream`);
  } catch (err) {
    if (!handleAuth(err)) showStatus("error", err.message);
  }
}

async function cancel() {
  if (!view || !view.id) return;
  try {
    await postJSON(`/result/${encodeURIComponent(view.id)}/cancel`);
  } catch (err) {
    if (!handleAuth(err)) showError({ message: err.message });
  }
}

// -- modifiers (only when the gateway serves GET /modifiers) ------------------------------
async function loadModifiers() {
  try {
    modifiers = (await getJSON("/modifiers")).modifiers || [];
  } catch (err) {
    handleAuth(err);
    modifiers = []; // 404: this gateway has no modifiers; the tab stays hidden
  }
  $("#modifier-tab").hidden = modifiers.length === 0;
  const select = $("#modifier-select");
  select.replaceChildren(...modifiers.map((m) => new Option(m.name, m.name)));
  if (modifiers.length) pickModifier(modifiers[0].name);
}

function pickModifier(name) {
  const m = modifiers.find((x) => x.name === name);
  $("#modifier-description").textContent = m ? m.description || "" : "";
  buildForm($("#modifier-form"), m ? m.parameters : null);
}

function selectTab(name) {
  for (const b of document.querySelectorAll("[data-tab]")) b.classList.toggle("active", b.dataset.tab === name);
  for (const p of document.querySelectorAll("[data-panel]")) p.hidden = p.dataset.panel !== name;
}

// -- queue, recent jobs, health: refreshed while the page is visible -------------------------
async function refreshLists() {
  try {
    const [info, jobs] = await Promise.all([getJSON("/queue-info"), getJSON("/jobs?limit=15")]);
    showQueue(info);
    showRecent(jobs.jobs, pick);
    banner("");
  } catch (err) {
    if (!handleAuth(err)) banner(`cannot reach the gateway: ${err.message}`);
  }
}

async function refreshHealth() {
  try { showHealth(await getJSON("/health")); } catch (err) {
    if (err instanceof ApiError && err.body && err.body.backends) showHealth(err.body); // 503: none answers
  }
}

function every(ms, fn) {
  const tick = async () => {
    if (!document.hidden) await fn();
    setTimeout(tick, ms);
  };
  tick();
}

// -- wiring -------------------------------------------------------------------------------
$("#api-key").value = apiKey.get();
$("#key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey.set($("#api-key").value.trim());
  banner("");
  refreshLists();
  loadModifiers();
});
for (const b of document.querySelectorAll("[data-tab]")) b.addEventListener("click", () => selectTab(b.dataset.tab));
$("#example").addEventListener("click", () => { $("#workflow-text").value = JSON.stringify(EXAMPLE, null, 2); });
$("#workflow-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (file) $("#workflow-text").value = await file.text();
});
$("#modifier-select").addEventListener("change", (e) => pickModifier(e.target.value));
$("#submit").addEventListener("click", submit);
$("#cancel").addEventListener("click", cancel);
$("#refresh").addEventListener("click", refreshLists);
loadModifiers();
every(2000, refreshLists);
every(10000, refreshHealth);
