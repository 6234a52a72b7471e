// A form built from a modifier's JSON schema (what GET /modifiers gives as `parameters`), and
// the modifications object read back from it.
import { h } from "./view.js";

function resolve(schema, root) {
  if (schema && schema.$ref && schema.$ref.startsWith("#/$defs/")) {
    return resolve(root.$defs?.[schema.$ref.slice(8)] || {}, root);
  }
  if (schema && Array.isArray(schema.anyOf)) { // Optional[X] is anyOf [X, null]
    const real = schema.anyOf.filter((s) => s.type !== "null");
    if (real.length === 1) return { ...schema, ...resolve(real[0], root), anyOf: undefined };
  }
  return schema || {};
}

function control(name, spec) {
  const id = `param-${name}`;
  const def = spec.default;
  if (Array.isArray(spec.enum)) {
    const select = h("select", { id, name },
      ...spec.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
    if (def !== undefined) select.value = JSON.stringify(def);
    return select;
  }
  switch (spec.type) {
    case "integer":
    case "number": {
      const input = h("input", { id, name, type: "number", step: spec.type === "integer" ? "1" : "any" });
      if (spec.minimum !== undefined) input.min = spec.minimum;
      if (spec.maximum !== undefined) input.max = spec.maximum;
      if (def !== undefined && def !== null) input.value = def;
      return input;
    }
    case "boolean": {
      const box = h("input", { id, name, type: "checkbox" });
      box.checked = def === true;
      return box;
    }
    case "string": {
      const long = (spec.maxLength || 0) > 200 || /prompt|text/i.test(name);
      const input = long ? h("textarea", { id, name, rows: "3" }) : h("input", { id, name, type: "text" });
      if (def !== undefined && def !== null) input.value = def;
      if (spec.pattern) input.dataset.pattern = spec.pattern;
      return input;
    }
    default: { // objects and arrays: JSON
      const area = h("textarea", { id, name, rows: "3", "data-json": "1" });
      if (def !== undefined) area.value = JSON.stringify(def);
      return area;
    }
  }
}

// Fills `form` for a schema (or a free JSON field when the modifier declares none).
export function buildForm(form, schema) {
  form.replaceChildren();
  if (!schema || !schema.properties) {
    form.append(h("label", { for: "param-json" }, "modifications"),
      h("textarea", { id: "param-json", name: "__json__", rows: "5", "data-json": "1" }, "{}"),
      h("span", { class: "help" }, "this modifier takes any modifications, as a JSON object"));
    return;
  }
  const required = new Set(schema.required || []);
  for (const [name, raw] of Object.entries(schema.properties)) {
    const spec = resolve(raw, schema);
    const el = control(name, spec);
    el.dataset.kind = Array.isArray(spec.enum) ? "enum" : spec.type || "json";
    if (required.has(name)) el.required = true;
    form.append(h("label", { for: el.id, class: required.has(name) ? "req" : "" }, spec.title || name), el);
    if (spec.description) form.append(h("span", { class: "help" }, spec.description));
  }
}

// The modifications to send: empty optional fields are left out, so the modifier's own
// defaults apply. Throws an Error naming the field when a value cannot be read.
export function readForm(form) {
  const free = form.querySelector("[name=__json__]");
  if (free) return JSON.parse(free.value || "{}");
  const out = {};
  for (const el of form.querySelectorAll("[name]")) {
    const kind = el.dataset.kind;
    if (kind === "boolean") { out[el.name] = el.checked; continue; }
    if (el.value === "") {
      if (el.required) throw new Error(`${el.name} is required`);
      continue;
    }
    if (kind === "enum") out[el.name] = JSON.parse(el.value);
    else if (kind === "integer" || kind === "number") out[el.name] = Number(el.value);
    else if (kind === "json") {
      try { out[el.name] = JSON.parse(el.value); } catch { throw new Error(`${el.name}: not valid JSON`); }
    } else out[el.name] = el.value;
  }
  return out;
}
