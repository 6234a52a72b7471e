// Rendering: everything the gateway sends is put in the page as text, never as HTML.
import { fileURL } from "./api.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const $ = (sel) => document.querySelector(sel);
const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
export const isTerminal = (status) => TERMINAL.has(status);

const seconds = (s) => (s === null || s === undefined ? "" : s < 10 ? `${s.toFixed(2)} s` : `${Math.round(s)} s`);

export function showStatus(status, message) {
  $("#status").className = `status ${status}`;
  const badge = $("#status-badge");
  badge.className = `badge ${status}`;
  badge.textContent = status.replace("_", " ");
  badge.hidden = false;
  $("#status-text").textContent = message && message !== status ? message : "";
}

export function showQueuePosition(qp) {
  const el = $("#queue-position");
  if (!qp || qp.position === null || qp.position === undefined) { el.hidden = true; return; }
  const ahead = qp.position === 0 ? "next in line" : `${qp.position} job${qp.position === 1 ? "" : "s"} ahead`;
  const wait = qp.estimated_wait_time != null ? ` · about ${seconds(qp.estimated_wait_time)}` : "";
  el.textContent = `Waiting in the ${qp.current_queue} queue: position ${qp.position + 1} of ` +
    `${qp.queue_size} (${ahead})${wait}`;
  el.hidden = false;
}

// One bar per node, in the order ComfyUI runs them; a node is full once the next one starts.
export class NodeBars {
  constructor() { this.rows = new Map(); this.current = null; }

  reset() {
    this.rows.clear(); this.current = null;
    $("#nodes").replaceChildren();
    $("#overall").hidden = true;
    $("#overall").classList.remove("done");
  }

  update(p) {
    if (!p || p.node === null || p.node === undefined) return;
    $("#overall").hidden = false;
    $("#overall-text").textContent = `${p.nodes_done} / ${p.nodes_total}`;
    const overall = $("#overall-bar");
    overall.max = Math.max(p.nodes_total, 1);
    overall.value = p.nodes_done;
    if (this.current !== null && this.current !== p.node) this.finish(this.current);
    this.current = p.node;
    let row = this.rows.get(p.node);
    if (!row) {
      const bar = h("progress", { max: "1", value: "0" });
      const text = h("span");
      row = { li: h("li", { class: "node-progress", "data-node": p.node },
        h("div", { class: "bar-label" }, h("span", {}, `node ${p.node} · ${p.node_type || "?"}`), text), bar), bar, text };
      this.rows.set(p.node, row);
      $("#nodes").append(row.li);
    }
    row.bar.max = p.max || 1;
    row.bar.value = p.value;
    row.text.textContent = p.max > 1 ? `${p.value} / ${p.max}` : "";
  }

  finish(node) {
    const row = this.rows.get(node);
    if (!row) return;
    row.bar.value = row.bar.max;
    row.li.classList.add("done");
  }

  finishAll(total) {
    for (const node of this.rows.keys()) this.finish(node);
    if (total) { $("#overall-bar").value = $("#overall-bar").max; $("#overall-text").textContent = `${total} / ${total}`; }
    $("#overall").classList.add("done");
  }
}

// ComfyUI's own words: the message, each node's errors, and an execution error's exception.
export function showError(error, title) {
  const box = $("#error");
  if (!error) { box.hidden = true; box.replaceChildren(); return; }
  const parts = [h("h3", {}, title || error.message || "failed")];
  if (title && error.message) parts.push(h("div", {}, error.message));
  const nodeErrors = error.node_errors || {};
  for (const [node, info] of Object.entries(nodeErrors)) {
    const items = (info.errors || []).map((e) => {
      const input = e.extra_info && e.extra_info.input_name ? ` (input ${e.extra_info.input_name})` : "";
      return h("li", {}, `${e.message}${e.details ? ": " + e.details : ""}${input}`);
    });
    parts.push(h("div", { class: "node-error" }, `node ${node} · ${info.class_type || "?"}`, h("ul", {}, items)));
  }
  const d = error.details || {};
  if (d.exception_type || d.exception_message) {
    parts.push(h("div", {}, `node ${d.node_id ?? "?"} · ${d.node_type || "?"}: ${d.exception_type || ""}: ${d.exception_message || ""}`));
    if (Array.isArray(d.traceback) && d.traceback.length) {
      parts.push(h("details", {}, h("summary", {}, "traceback"), h("pre", {}, d.traceback.join(""))));
    }
  }
  if (Array.isArray(error.errors)) { // a refused request (422): where and what
    parts.push(h("ul", {}, error.errors.map((e) => h("li", {}, `${(e.loc || []).join(".")}: ${e.msg}`))));
  }
  box.replaceChildren(...parts);
  box.hidden = false;
}

export async function showOutputs(result) {
  const box = $("#outputs");
  box.replaceChildren();
  for (const out of result.output || []) {
    const fig = h("figure", { "data-filename": out.filename });
    box.append(fig);
    try {
      const url = await fileURL(out.url);
      const media = (out.content_type || "").startsWith("image/") ? h("img", { src: url, alt: out.filename })
        : h("a", { href: url, download: out.filename }, "download");
      fig.append(media, h("figcaption", {}, `${out.filename} · ${out.size_bytes ?? "?"} bytes`));
    } catch (err) {
      fig.append(h("figcaption", {}, `${out.filename}: ${err.message}`));
    }
  }
}

export function showQueue(info) {
  const body = $("#queue-table tbody");
  body.replaceChildren(...Object.entries(info.queues).map(([stage, q]) =>
    h("tr", { "data-stage": stage }, h("td", {}, stage), h("td", {}, q.waiting), h("td", {}, q.busy),
      h("td", {}, q.workers), h("td", {}, seconds(q.mean_duration)))));
  $("#backends").replaceChildren(...info.backends.map((b) =>
    h("li", {}, h("span", { class: `dot ${b.connected ? "up" : ""}` }), h("code", {}, b.name),
      h("span", { class: "when" }, `${b.in_flight} in flight`))));
}

export function showRecent(jobs, onPick) {
  $("#recent-jobs").replaceChildren(...jobs.map((job) => {
    const li = h("li", { "data-id": job.id, title: job.message },
      h("code", {}, job.id.slice(0, 8)),
      h("span", { class: "when" }, `${new Date(job.created_at).toLocaleTimeString()}` +
        (job.durations && job.durations.total != null ? ` · ${seconds(job.durations.total)}` : "")),
      h("span", { class: `badge ${job.status}` }, job.status.replace("_", " ")));
    li.addEventListener("click", () => onPick(job.id));
    return li;
  }));
}

export function showHealth(health) {
  const el = $("#health");
  el.className = `pill ${health.status}`;
  const up = health.backends.filter((b) => b.reachable).length;
  el.textContent = `${health.status} · ${up}/${health.backends.length} ComfyUI`;
}
