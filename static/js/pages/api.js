// The API explorer: GET /openapi.json rendered by tag, searchable, every operation expandable with its parameters and
// its request and response schemas (nested $ref schemas expanded: a few levels open, deeper ones on demand, cycles
// named instead of followed), and "Try it": the operation sent with the signed-in token, its status, headers and
// pretty-printed response shown.
import { api, ensureGuest, h, session, showError, useStyle } from "../api.js";

const OPEN_DEPTH = 3;   // nested schemas shown open down to this level; deeper ones open on demand
const MAX_DEPTH = 12;   // never deeper than this (OpenRTB's BidRequest nests about six levels)
const MAX_TEXT = 100_000; // a longer response body is cut in the page (it is still all received)
const SUCCESS = /^[123]/;

let cached = null; // the spec, fetched once per visit of the console

async function loadSpec() {
  if (!cached) cached = await api("GET", "/openapi.json");
  return cached;
}

export async function render(root, { params }) {
  useStyle("api");
  // Everything goes into `page`, appended now: if the user leaves while the spec loads, the router empties the root
  // and a late fill lands in a detached element rather than in the next page.
  const page = h("div", { class: "api-page wide" });
  root.append(page);
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" }, "Loading /openapi.json…");
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const head = h("section", { class: "card api-head" }, h("h1", {}, "API explorer"), status, error);
  page.append(head);
  let spec;
  try {
    spec = await loadSpec();
  } catch (err) {
    status.textContent = "";
    showError(error, err);
    head.append(h("div", { class: "actions" },
      h("button", { type: "button", onclick: () => { root.replaceChildren(); render(root, { params }); } }, "Try again")));
    return;
  }
  const ops = operations(spec);
  const schemas = (spec.components && spec.components.schemas) || {};

  const search = h("input", { id: "api-search", type: "search", autocomplete: "off", spellcheck: "false",
                              placeholder: "offers, /v1/orders, loyalty…", "aria-describedby": "api-count",
                              value: params.get("q") || "" });
  const count = h("p", { id: "api-count", class: "muted", role: "status", "aria-live": "polite" });
  const empty = h("p", { class: "muted", hidden: true });
  head.replaceChildren(
    h("h1", {}, "API explorer"),
    h("p", { class: "muted" }, `${spec.info.title} ${spec.info.version} (OpenAPI ${spec.openapi}): `,
      spec.info.description || "", " The machine-readable reference is ",
      h("a", { href: "/openapi.json" }, "/openapi.json"), "."),
    credentials(error),
    h("label", { for: "api-search" }, "Search operations (path, summary or tag)"),
    search, count, error);

  const groups = new Map();
  for (const op of ops) {
    if (!groups.has(op.tag)) groups.set(op.tag, []);
    groups.get(op.tag).push(op);
  }
  const sections = [];
  for (const [tag, list] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
    const items = list.map((op) => ({ op, el: operationView(op, schemas) }));
    const section = h("section", { class: "card api-tag", "aria-labelledby": `tag-${slug(tag)}` },
      h("h2", { id: `tag-${slug(tag)}` }, tag), ...items.map((i) => i.el));
    sections.push({ section, items });
  }
  page.append(...sections.map((s) => s.section), empty);

  const filter = () => {
    const terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const { section, items } of sections) {
      let any = false;
      for (const { op, el } of items) {
        const match = terms.every((t) => op.text.includes(t));
        el.hidden = !match;
        if (match) { any = true; shown++; }
      }
      section.hidden = !any;
    }
    count.textContent = terms.length ? `${shown} of ${ops.length} operations match` : `${ops.length} operations`;
    empty.hidden = shown > 0;
    empty.textContent = shown ? "" : `No operation matches “${search.value.trim()}”.`;
  };
  search.addEventListener("input", filter);
  filter();

  const wanted = params.get("op");
  if (wanted) {
    const found = sections.flatMap((s) => s.items).find((i) => i.op.id === wanted);
    if (found) { found.el.open = true; found.el.scrollIntoView({ block: "start" }); }
  }
}

/** Who "Try it" sends as; a visitor without a session may take a guest token (enough to search and book). */
function credentials(error) {
  const note = h("p", { class: "muted" });
  const update = () => {
    const who = session();
    if (who && who.role !== "guest") {
      note.replaceChildren(`“Try it” sends requests as ${who.email || who.subject} (${who.role}).`);
    } else if (who) {
      note.replaceChildren("“Try it” sends requests with your guest token; ",
        h("a", { href: "#/signin" }, "sign in"), " to call customer or staff operations.");
    } else {
      note.replaceChildren("“Try it” sends requests without credentials. ",
        h("button", { type: "button", class: "secondary", onclick: async () => {
          error.hidden = true;
          try { await ensureGuest(); update(); } catch (err) { showError(error, err); }
        } }, "Use a guest token"), " or ", h("a", { href: "#/signin" }, "sign in"), ".");
    }
  };
  update();
  return note;
}

// ---- the spec ----

function operations(spec) {
  const out = [];
  for (const [path, methods] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(methods)) {
      if (!["get", "put", "post", "delete", "patch", "head", "options"].includes(method)) continue;
      const tags = op.tags && op.tags.length ? op.tags : ["other"];
      const id = op.operationId || `${method}_${path}`;
      // Search looks at the path, the summary, the tags (and the method, so "post offers" narrows).
      const text = [method, path, op.summary || "", ...tags].join(" ").toLowerCase();
      out.push({ id, method, path, op, tag: tags[0], tags, text });
    }
  }
  return out;
}

const slug = (s) => String(s).replace(/[^A-Za-z0-9_-]+/g, "-");
const refName = (ref) => decodeURIComponent(String(ref).split("/").pop());

function operationView(entry, schemas) {
  const { method, path, op, tags } = entry;
  const details = h("details", { class: "op", id: `op-${slug(entry.id)}` },
    h("summary", {},
      h("span", { class: `method ${method}` }, method.toUpperCase()), " ",
      h("code", { class: "path" }, path), " ",
      h("span", { class: "op-summary" }, op.summary || "")));
  let built = false;
  details.addEventListener("toggle", () => {
    if (!details.open || built) return;
    built = true;
    details.append(operationBody(entry, schemas, tags));
  });
  return details;
}

function operationBody(entry, schemas, tags) {
  const { op } = entry;
  const body = h("div", { class: "op-body" });
  const secured = Array.isArray(op.security) && op.security.length > 0;
  body.append(h("p", { class: "muted" },
    op.description ? `${op.description} ` : "",
    secured ? "Credentials: a bearer token or an API key." : "No credentials needed.",
    tags.length > 1 ? ` Tags: ${tags.join(", ")}.` : ""));

  const params = op.parameters || [];
  if (params.length) {
    body.append(h("h3", {}, "Parameters"), h("div", { class: "table-wrap" }, h("table", { class: "params" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "In"), h("th", {}, "Type"),
        h("th", {}, "Description"))),
      h("tbody", {}, params.map((p) => h("tr", {},
        h("td", {}, h("code", {}, p.name), p.required ? h("span", { class: "req" }, " required") : null),
        h("td", { "data-label": "in" }, p.in),
        h("td", { "data-label": "type" }, typeLabel(p.schema || {}), constraintText(p.schema || {})),
        h("td", { class: "muted" }, p.description || (p.schema && p.schema.description) || "")))))));
  }

  const request = jsonContent(op.requestBody);
  if (op.requestBody) {
    const types = Object.keys(op.requestBody.content || {}).join(", ");
    body.append(h("h3", {}, "Request body"),
      h("p", { class: "muted" }, `${types}${op.requestBody.required ? ", required" : ", optional"}`),
      request ? schemaView(request, schemas, 0, []) : h("p", { class: "muted" }, "No schema."));
  }

  const responses = Object.entries(op.responses || {}).sort(([a], [b]) => a.localeCompare(b));
  const ok = responses.filter(([code]) => SUCCESS.test(code));
  const errors = responses.filter(([code]) => !SUCCESS.test(code));
  body.append(h("h3", {}, "Responses"));
  for (const [code, resp] of ok) {
    const schema = jsonContent(resp);
    const types = Object.keys(resp.content || {});
    body.append(h("div", { class: "response" },
      h("p", {}, h("strong", { class: "ok" }, code), " ", resp.description || "",
        types.length ? h("span", { class: "muted" }, ` (${types.join(", ")})`) : "",
        resp.headers ? h("span", { class: "muted" }, `; headers: ${Object.keys(resp.headers).join(", ")}`) : ""),
      schema ? schemaView(schema, schemas, 0, []) : null));
  }
  if (errors.length) {
    const errorDetails = h("details", { class: "errors" },
      h("summary", {}, `Error responses (${errors.map(([c]) => c).join(", ")})`),
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "When"), h("th", {}, "Body"))),
        h("tbody", {}, errors.map(([code, resp]) => {
          const schema = jsonContent(resp);
          return h("tr", {}, h("td", {}, h("strong", { class: "bad" }, code)), h("td", {}, resp.description || ""),
            h("td", {}, schema ? typeLabel(schema) : "none"));
        })))));
    const envelope = errors.map(([, r]) => jsonContent(r)).find(Boolean);
    let shown = false;
    errorDetails.addEventListener("toggle", () => {
      if (!errorDetails.open || shown || !envelope) return;
      shown = true;
      errorDetails.append(schemaView(envelope, schemas, 0, []));
    });
    body.append(errorDetails);
  }
  body.append(tryIt(entry, schemas, request));
  return body;
}

function jsonContent(holder) {
  const content = holder && holder.content;
  if (!content) return null;
  const key = Object.keys(content).find((t) => t.includes("json"));
  return key && content[key].schema ? content[key].schema : null;
}

// ---- schemas ----

/** A short name for a schema's type: "string", "Offer[]", "string | null", "Conditions", "map of string → X". */
function typeLabel(schema) {
  if (!schema || typeof schema !== "object") return "any";
  if (schema.$ref) return refName(schema.$ref);
  const alts = schema.anyOf || schema.oneOf;
  if (alts) return alts.map(typeLabel).join(" | ");
  if (schema.allOf) return schema.allOf.map(typeLabel).join(" & ");
  if (schema.enum) return "enum";
  if ("const" in schema) return `const ${JSON.stringify(schema.const)}`;
  const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type;
  if (type === "array" || (!type && schema.items)) return `${typeLabel(schema.items)}[]`;
  if ((type === "object" || !type) && schema.additionalProperties && typeof schema.additionalProperties === "object"
      && !schema.properties) return `map of string → ${typeLabel(schema.additionalProperties)}`;
  return type || (schema.properties ? "object" : "any");
}

/** The constraints worth reading: format, pattern, bounds, lengths, the default, the allowed values. */
function constraintText(schema) {
  const parts = constraints(schema);
  return parts.length ? h("span", { class: "constraints muted" }, ` · ${parts.join(" · ")}`) : "";
}

function constraints(s) {
  if (!s || typeof s !== "object" || s.$ref) return [];
  const parts = [];
  if (s.format) parts.push(`format ${s.format}`);
  if (s.enum) parts.push(`one of ${s.enum.map((v) => JSON.stringify(v)).join(", ")}`);
  if (s.pattern) parts.push(`pattern ${s.pattern}`);
  for (const [k, label] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"]])
    if (s[k] !== undefined) parts.push(`${label} ${s[k]}`);
  for (const [k, label] of [["minLength", "min length"], ["maxLength", "max length"], ["minItems", "min items"],
                            ["maxItems", "max items"], ["minProperties", "min entries"], ["maxProperties", "max entries"]])
    if (s[k] !== undefined) parts.push(`${label} ${s[k]}`);
  if (s.propertyNames && s.propertyNames.enum)
    parts.push(`keys ${s.propertyNames.enum.map((v) => JSON.stringify(v)).join(", ")}`);
  if (s.not && s.not.enum) parts.push(`not ${s.not.enum.map((v) => JSON.stringify(v)).join(" or ")}`);
  if ("default" in s) parts.push(`default ${JSON.stringify(s.default)}`);
  if (s.items && !s.items.$ref) {
    const inner = constraints(s.items);
    if (inner.length) parts.push(`items: ${inner.join(", ")}`);
  }
  return parts;
}

/** The named or inline schemas a property leads to (through arrays, maps and anyOf), to show nested under it. */
function nestedOf(schema) {
  if (!schema || typeof schema !== "object") return [];
  if (schema.$ref) return [schema];
  const alts = schema.anyOf || schema.oneOf || schema.allOf;
  if (alts) return alts.flatMap(nestedOf);
  if (schema.items) return nestedOf(schema.items);
  if (schema.properties) return [schema];
  if (schema.additionalProperties && typeof schema.additionalProperties === "object")
    return nestedOf(schema.additionalProperties);
  return [];
}

/**
 * A schema as a tree. A $ref becomes a block named after its schema: open down to OPEN_DEPTH, built on first opening
 * below that, not followed past MAX_DEPTH, and named as recursive when it is one of its own ancestors (`trail`).
 */
function schemaView(schema, schemas, depth, trail) {
  if (schema && schema.$ref) {
    const name = refName(schema.$ref);
    if (trail.includes(name))
      return h("p", { class: "schema-note muted" }, h("code", {}, name), " (recursive: as above)");
    const target = schemas[name];
    if (!target) return h("p", { class: "schema-note bad" }, `Unknown schema ${name}`);
    if (depth >= MAX_DEPTH)
      return h("p", { class: "schema-note muted" }, h("code", {}, name), " (nested too deep to show)");
    const block = h("details", { class: "schema", open: depth < OPEN_DEPTH },
      h("summary", {}, h("code", { class: "schema-name" }, name), " ",
        h("span", { class: "muted" }, typeLabel({ ...target, title: undefined }))));
    const fill = () => {
      const desc = firstParagraph(target.description);
      if (desc) block.append(h("p", { class: "muted schema-desc" }, desc));
      block.append(schemaBody(target, schemas, depth, [...trail, name]));
    };
    if (depth < OPEN_DEPTH) fill();
    else {
      let built = false;
      block.addEventListener("toggle", () => { if (block.open && !built) { built = true; fill(); } });
    }
    return block;
  }
  return h("div", { class: "schema inline" }, schemaBody(schema || {}, schemas, depth, trail));
}

function schemaBody(schema, schemas, depth, trail) {
  if (schema.properties) {
    const required = new Set(schema.required || []);
    const list = h("ul", { class: "props" });
    for (const [name, prop] of Object.entries(schema.properties)) {
      const desc = firstParagraph(prop.description);
      const item = h("li", {},
        h("code", { class: "prop" }, name), " ",
        h("span", { class: "type" }, typeLabel(prop)),
        required.has(name) ? h("span", { class: "req" }, " required") : "",
        constraintText(prop),
        desc ? h("div", { class: "muted prop-desc" }, desc) : null);
      for (const inner of nestedOf(prop)) item.append(schemaView(inner, schemas, depth + 1, trail));
      list.append(item);
    }
    const extra = schema.additionalProperties;
    if (extra === false) list.append(h("li", { class: "muted" }, "No other fields."));
    else if (extra && typeof extra === "object")
      list.append(h("li", {}, h("code", { class: "prop" }, "<any name>"), " ", h("span", { class: "type" }, typeLabel(extra))));
    return list;
  }
  const nested = nestedOf(schema).filter((s) => s !== schema);
  const line = h("p", { class: "schema-line" }, h("span", { class: "type" }, typeLabel(schema)),
    constraintText(schema));
  if (!nested.length) return line;
  return h("div", {}, line, ...nested.map((s) => schemaView(s, schemas, depth + 1, trail)));
}

const firstParagraph = (text) => (text ? String(text).split(/\n\s*\n/)[0].replace(/\s+/g, " ").trim() : "");

// ---- example values, to prefill the body editor ----

/** A value that fits the schema: its required fields and those with a (non-null) default, each its default, its first
 *  allowed value or a placeholder of its type and format. */
function sample(schema, schemas, trail = []) {
  if (!schema || typeof schema !== "object" || trail.length > 10) return null;
  if (schema.$ref) {
    const name = refName(schema.$ref);
    if (trail.includes(name) || !schemas[name]) return null;
    return sample(schemas[name], schemas, [...trail, name]);
  }
  if ("example" in schema) return schema.example;
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if ("default" in schema) return schema.default;
  if ("const" in schema) return schema.const;
  if (schema.enum) return schema.enum[0];
  const alts = schema.anyOf || schema.oneOf;
  if (alts) return sample(alts.find((s) => s.type !== "null") || alts[0], schemas, trail);
  if (schema.allOf) return Object.assign({}, ...schema.allOf.map((s) => sample(s, schemas, trail)));
  let type = Array.isArray(schema.type) ? (schema.type.find((t) => t !== "null") || "null") : schema.type;
  if (!type) type = schema.properties ? "object" : schema.items ? "array" : null;
  switch (type) {
    case "object": {
      const out = {};
      const required = new Set(schema.required || []);
      for (const [name, prop] of Object.entries(schema.properties || {}))
        if (required.has(name) || ("default" in prop && prop.default !== null)) out[name] = sample(prop, schemas, trail);
      const extra = schema.additionalProperties;
      if (!schema.properties && extra && typeof extra === "object") {  // a map: one entry to show its shape
        const key = schema.propertyNames && schema.propertyNames.enum ? schema.propertyNames.enum[0] : "key";
        out[key] = sample(extra, schemas, trail);
      }
      return out;
    }
    case "array": return schema.minItems === 0 && !schema.items ? [] : [sample(schema.items, schemas, trail)];
    case "integer":
    case "number": {
      let v = schema.minimum !== undefined ? schema.minimum
        : schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 0;
      if (schema.maximum !== undefined && v > schema.maximum) v = schema.maximum;
      return type === "integer" ? Math.ceil(v) : v;
    }
    case "boolean": return false;
    case "string": return sampleString(schema);
    default: return null;
  }
}

function sampleString(schema) {
  const soon = new Date(Date.now() + 14 * 86400_000);
  const byFormat = { date: soon.toISOString().slice(0, 10), "date-time": soon.toISOString(), email: "user@example.com",
                     uuid: "00000000-0000-4000-8000-000000000000", uri: "/", hostname: "example.com" };
  let value = byFormat[schema.format] || (schema.pattern && fromPattern(schema.pattern)) || "string";
  if (schema.minLength && value.length < schema.minLength) value = value.padEnd(schema.minLength, "x");
  if (schema.maxLength && value.length > schema.maxLength) value = value.slice(0, schema.maxLength);
  return value;
}

/** The shortest string a simple anchored pattern (classes, escapes, literals, quantifiers) accepts, or null. */
function fromPattern(pattern) {
  // Contrail's whole-value patterns (state/text.py whole()) read ^(?:X)$(?!\n): X is the simple part.
  const whole = pattern.match(/^\^\(\?:(.*)\)\$\(\?!\\n\)$/);
  if (whole) {
    const out = fromPattern(`^${whole[1]}$`);
    try { return out !== null && new RegExp(pattern).test(out) ? out : null; } catch { return null; }
  }
  if (!pattern.startsWith("^") || !pattern.endsWith("$")) return null;
  const src = pattern.slice(1, -1);
  let out = "";
  for (let i = 0; i < src.length;) {
    let piece;
    const c = src[i];
    if (c === "[") {
      const end = src.indexOf("]", i + 2);
      if (end < 0 || src[i + 1] === "^") return null;
      piece = src[i + 1] === "\\" ? ({ d: "0", w: "a", s: " " }[src[i + 2]] || src[i + 2]) : src[i + 1];
      i = end + 1;
    } else if (c === "\\") {
      piece = { d: "0", w: "a", s: " " }[src[i + 1]] ?? src[i + 1];
      i += 2;
    } else if ("()|".includes(c)) {
      return null;
    } else {
      piece = c === "." ? "a" : c;
      i += 1;
    }
    let times = 1;
    const q = src.slice(i).match(/^(\{(\d+)(,\d*)?\}|[+*?])/);
    if (q) {
      times = q[2] !== undefined ? Number(q[2]) : q[1] === "+" ? 1 : 0;
      i += q[1].length;
    }
    out += piece.repeat(times);
  }
  try { return new RegExp(pattern).test(out) ? out : null; } catch { return null; }
}

// ---- Try it ----

function tryIt(entry, schemas, request) {
  const { method, path, op } = entry;
  const base = `try-${slug(entry.id)}`;
  const fields = [];
  const form = h("form", { class: "try", novalidate: true, "aria-labelledby": `${base}-title` },
    h("h3", { id: `${base}-title` }, "Try it"));
  if (path.startsWith("/v1/stream/"))
    form.append(h("p", { class: "muted" }, "A websocket: connect with a WebSocket client (the token goes in ?token=). ",
      "A plain request, as sent here, answers 426 Upgrade Required."));
  const params = (op.parameters || []).filter((p) => ["path", "query", "header"].includes(p.in));
  if (params.length) {
    const grid = h("div", { class: "try-fields" });
    for (const p of params) {
      const id = `${base}-${p.in}-${slug(p.name)}`;
      const schema = p.schema || {};
      let input;
      const values = schema.enum || (schema.type === "boolean" ? [true, false] : null);
      if (values) {
        input = h("select", { id },
          p.required ? null : h("option", { value: "" }, "(not sent)"),
          values.map((v) => h("option", { value: String(v) }, String(v))));
      } else {
        const numeric = schema.type === "integer" || schema.type === "number";
        input = h("input", { id, type: "text", autocomplete: "off", spellcheck: "false",
                             inputmode: numeric ? (schema.type === "integer" ? "numeric" : "decimal") : null,
                             placeholder: "default" in schema ? `default ${schema.default}` : null });
      }
      fields.push({ p, input });
      grid.append(h("div", { class: "field" },
        h("label", { for: id }, h("code", {}, p.name), ` (${p.in}${p.required ? ", required" : ""})`), input));
    }
    form.append(grid);
  }
  let editor = null;
  const initial = request ? JSON.stringify(sample(request, schemas), null, 2) : null;
  if (op.requestBody) {
    const id = `${base}-body`;
    editor = h("textarea", { id, class: "body-editor", spellcheck: "false", autocomplete: "off",
                             rows: Math.min(16, Math.max(4, (initial || "").split("\n").length + 1)) });
    editor.value = initial || "";
    form.append(h("label", { for: id }, "Request body (JSON)"), editor);
  }
  const problem = h("p", { class: "error", role: "alert", hidden: true });
  const send = h("button", { type: "submit" }, "Send request");
  const actions = h("div", { class: "actions" }, send);
  if (editor) actions.append(h("button", { type: "button", class: "secondary",
                                             onclick: () => { editor.value = initial || ""; } }, "Reset body"));
  const result = h("div", { class: "try-result", "aria-live": "polite" });
  form.append(problem, actions, result);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    problem.hidden = true;
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    const missing = [];
    for (const { p, input } of fields) {
      const value = input.value.trim();
      if (!value) { if (p.required) missing.push(p.name); continue; }
      if (p.in === "path") url = url.replace(`{${p.name}}`, encodeURIComponent(value));
      else if (p.in === "query") query.append(p.name, value);
      else headers[p.name] = value;
    }
    if (missing.length) { showError(problem, `Fill in ${missing.join(", ")} first.`); return; }
    const qs = query.toString();
    if (qs) url += `?${qs}`;
    let body;
    if (editor && editor.value.trim()) {
      try { body = JSON.parse(editor.value); } catch (err) {
        showError(problem, `The request body is not valid JSON: ${err.message}`);
        editor.focus();
        return;
      }
    }
    send.disabled = true;
    send.textContent = "Sending…";
    try {
      result.replaceChildren(await exchange(method.toUpperCase(), url, headers, body));
    } finally {
      send.disabled = false;
      send.textContent = "Send request";
    }
  });
  return form;
}

/** Send one request (with the session's token) and show what came back: status, time, body, headers, as curl. */
async function exchange(method, url, headers, body) {
  const s = session();
  const sent = { ...headers };
  if (s) sent.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  const started = performance.now();
  let resp;
  try {
    resp = await fetch(url, { method, headers: sent, cache: "no-store",
                              body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    return h("p", { class: "error", role: "alert" }, "The server cannot be reached; try again when it is back.");
  }
  const ms = Math.round(performance.now() - started);
  const type = resp.headers.get("Content-Type") || "";
  let shown, message = null;
  if (resp.status === 204 || resp.status === 304) shown = "(no body)";
  else if (type.includes("json")) {
    const text = await resp.text();
    try {
      const json = JSON.parse(text);
      if (json && json.error && typeof json.error.message === "string") message = json.error.message;
      shown = JSON.stringify(json, null, 2);
    } catch { shown = text; }
  } else if (type.startsWith("text/") || type.includes("xml") || type.includes("javascript")) {
    shown = await resp.text();
  } else {
    const blob = await resp.blob();
    shown = `(${blob.size} bytes of ${type || "unknown type"})`;
  }
  if (!shown) shown = "(no body)";
  if (shown.length > MAX_TEXT) shown = `${shown.slice(0, MAX_TEXT)}\n… (${shown.length - MAX_TEXT} more characters)`;
  const good = resp.status < 400;
  const headerRows = [...resp.headers.entries()].map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)));
  return h("div", {},
    h("p", { class: "try-status" },
      h("strong", { class: good ? "ok" : "bad" }, `${resp.status} ${resp.statusText}`.trim()),
      h("span", { class: "muted" }, ` · ${ms} ms${type ? ` · ${type.split(";")[0]}` : ""}`),
      resp.redirected ? h("span", { class: "muted" }, ` · followed a redirect to ${resp.url}`) : ""),
    message ? h("p", { class: "error" }, message) : null,
    h("pre", { class: "try-body", tabindex: "0", "aria-label": "Response body" }, shown),
    h("details", { class: "try-headers" }, h("summary", {}, `Response headers (${headerRows.length})`),
      h("div", { class: "table-wrap" }, h("table", {}, h("tbody", {}, headerRows)))),
    h("details", { class: "try-curl" }, h("summary", {}, "As a curl command"),
      h("pre", { tabindex: "0", "aria-label": "curl command" }, curl(method, url, headers, body, Boolean(s)))));
}

function curl(method, url, headers, body, withToken) {
  const q = (s) => `'${String(s).replace(/'/g, "'\\''")}'`;
  const parts = [`curl -sS -X ${method} ${q(location.origin + url)}`];
  if (withToken) parts.push(`-H "Authorization: Bearer $TOKEN"`);
  for (const [k, v] of Object.entries(headers)) parts.push(`-H ${q(`${k}: ${v}`)}`);
  if (body !== undefined) parts.push(`-H 'Content-Type: application/json'`, `-d ${q(JSON.stringify(body))}`);
  return parts.join(" \\\n  ");
}
