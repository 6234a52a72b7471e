// Calls to the gateway's public API, with the API key from localStorage as a Bearer token.
const KEY = "comfy-gateway.api-key";

export const apiKey = {
  get: () => localStorage.getItem(KEY) || "",
  set: (value) => value ? localStorage.setItem(KEY, value) : localStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    // Refusals carry {detail}; a request refused for its inputs carries the failed result.
    const detail = body && typeof body.detail === "string" ? body.detail
      : body && body.error && body.error.message ? body.error.message : `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.body = body;
  }
}

function headers(extra = {}) {
  const key = apiKey.get();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function bodyOf(resp) {
  const text = await resp.text();
  try { return JSON.parse(text); } catch { return { detail: text || resp.statusText }; }
}

export async function getJSON(path) {
  const resp = await fetch(path, { headers: headers() });
  const body = await bodyOf(resp);
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

export async function postJSON(path, payload) {
  const resp = await fetch(path, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }),
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  const body = await bodyOf(resp);
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

// Server-sent events from a fetch (EventSource can neither POST nor send an Authorization
// header): calls onEvent(name, data, id) for each event until the stream ends.
export async function streamEvents(path, { method = "GET", payload, signal, onEvent }) {
  const init = { method, signal, headers: headers({ Accept: "text/event-stream" }) };
  if (payload !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) throw new ApiError(resp.status, await bodyOf(resp));
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = { event: "message", data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue; // keep-alive comments
        const i = line.indexOf(":");
        const name = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (name === "data") fields.data.push(val); else fields[name] = val;
      }
      if (fields.data.length) onEvent(fields.event, JSON.parse(fields.data.join("\n")), fields.id);
    }
  }
}

// An output file as something an <img> or <a> can show: same-origin files need the key,
// so they are fetched and handed over as blob URLs; other hosts (signed S3 URLs) as they are.
export async function fileURL(url) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) return target.href;
  const resp = await fetch(target.href, { headers: headers() });
  if (!resp.ok) throw new ApiError(resp.status, await bodyOf(resp));
  return URL.createObjectURL(await resp.blob());
}
