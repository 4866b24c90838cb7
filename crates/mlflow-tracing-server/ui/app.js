// The mlflow-tracing web UI: experiments, a searchable trace table, sessions, and a trace view whose span tree
// and timeline are virtualised so 100,000-span traces stay smooth. It reads only the server's public API.
// Trace content is only ever written with textContent: nothing a traced program recorded can become markup.

const ROW_HEIGHT = 26;
const PAGE_SIZE = 50;
const LONG_TEXT = 400;
const SESSION_KEY = "mlflow.trace.session";
const USER_KEY = "mlflow.trace.user";
const TOKENS_KEY = "mlflow.trace.tokenUsage";
const SPAN_TYPES = ["LLM", "CHAT_MODEL", "CHAIN", "AGENT", "TOOL", "RETRIEVER", "EMBEDDING", "RERANKER",
  "PARSER", "MEMORY", "WORKFLOW", "TASK", "GUARDRAIL", "EVALUATOR", "UNKNOWN"];

// ---------------------------------------------------------------------------------------------------------
// DOM and API helpers

/** Builds an element: `el("a.link", {href}, "text", child)`. Strings become text nodes, never markup. */
function el(spec, props, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "class") node.className += ` ${value}`;
    else if (key === "value") node.value = value;
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/ajax-api${path}`, init);
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : {}; } catch { /* not JSON */ }
  if (!response.ok) {
    throw new ApiError(response.status, json?.error_code ?? "HTTP_" + response.status,
      json?.message ?? (text || response.statusText));
  }
  return json;
}

function toast(message) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => node.classList.remove("show"), 1800);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = el("textarea", { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast("Copied");
}

function copyButton(text, label = "Copy") {
  return el("button.copy", { type: "button", title: "Copy to clipboard", onclick: (e) => { e.stopPropagation(); copyText(typeof text === "function" ? text() : text); } }, label);
}

function errorBox(error) {
  return el("div.filter-error", { role: "alert" }, error instanceof ApiError ? `${error.code}: ${error.message}` : String(error));
}

// ---------------------------------------------------------------------------------------------------------
// Formatting

function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.floor(ms / 60000)} m ${((ms % 60000) / 1000).toFixed(0)} s`;
}

function formatTime(ms) {
  if (!ms && ms !== 0) return "—";
  const date = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function requestTimeMs(info) {
  const value = info.request_time;
  return typeof value === "number" ? value : Date.parse(value);
}

function durationMs(info) {
  const value = info.execution_duration;
  if (value === undefined || value === null) return info.execution_duration_ms ?? null;
  return typeof value === "number" ? value : parseFloat(value) * 1000;
}

function tokenUsage(info) {
  const raw = info.trace_metadata?.[TOKENS_KEY];
  if (!raw) return null;
  try { return JSON.parse(raw); } catch { return null; }
}

function traceName(info) {
  return info.tags?.["mlflow.traceName"] ?? "";
}

/** A readable form of a preview: the text of a one-field object or of the last user message, else the JSON. */
function previewText(preview) {
  if (!preview) return "";
  let value;
  try { value = JSON.parse(preview); } catch { return preview; }
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const messages = Array.isArray(value.messages) ? value.messages : null;
    if (messages) {
      const last = [...messages].reverse().find((m) => m?.role === "user") ?? messages[messages.length - 1];
      const text = messageText(last?.content);
      if (text) return text;
    }
    for (const key of ["question", "query", "input", "prompt", "message", "text", "content"]) {
      if (typeof value[key] === "string") return value[key];
    }
    const keys = Object.keys(value);
    if (keys.length === 1 && typeof value[keys[0]] === "string") return value[keys[0]];
  }
  return preview;
}

function userTags(tags) {
  return Object.entries(tags ?? {}).filter(([key]) => !key.startsWith("mlflow."));
}

function truncate(text, limit) {
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

// ---------------------------------------------------------------------------------------------------------
// Routing: every experiment, trace and span has a hash URL.

function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function href(parts, params) {
  const path = "#/" + parts.map(encodeURIComponent).join("/");
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString() : "";
  return query ? `${path}?${query}` : path;
}

let current = null; // the page object on screen: { key, update(params)?, dispose()? }

function route() {
  const { parts, params } = parseRoute();
  const main = document.getElementById("main");
  let key;
  let make;
  if (parts[0] === "traces" && parts[1]) {
    key = `trace:${parts[1]}`;
    make = () => new TracePage(parts[1], params);
  } else if (parts[0] === "experiments" && parts[1] && parts[2] === "sessions" && parts[3]) {
    key = `session:${parts[1]}:${parts[3]}`;
    make = () => sessionPage(parts[1], parts[3]);
  } else if (parts[0] === "experiments" && parts[1] && parts[2] === "sessions") {
    key = `sessions:${parts[1]}`;
    make = () => sessionsPage(parts[1]);
  } else if (parts[0] === "experiments" && parts[1]) {
    key = `traces:${parts[1]}:${params.toString()}`;
    make = () => new TracesPage(parts[1], params);
  } else {
    key = "experiments";
    make = () => experimentsPage();
  }
  if (current?.key === key) {
    // A deep link to another span of the trace on screen selects it without reloading the trace.
    if (current.update && current.info) current.update(params);
    return;
  }
  current?.dispose?.();
  main.replaceChildren();
  const page = make();
  page.key = key;
  current = page;
  main.append(page.node);
}

function setCrumbs(...items) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren();
  items.forEach((item, index) => {
    if (index) nav.append(el("span.sep", {}, "/"));
    nav.append(item.href ? el("a", { href: item.href }, item.text) : el("span", {}, item.text));
  });
}

const experimentNames = new Map();

async function experimentName(id) {
  if (!experimentNames.has(id)) {
    try {
      const reply = await api("GET", `/2.0/mlflow/experiments/get?experiment_id=${encodeURIComponent(id)}`);
      experimentNames.set(id, reply.experiment.name);
    } catch {
      experimentNames.set(id, `experiment ${id}`);
    }
  }
  return experimentNames.get(id);
}

function experimentCrumbs(id, last) {
  const crumbs = [{ text: "Experiments", href: "#/" }, { text: `experiment ${id}`, href: href(["experiments", id]) }];
  if (last) crumbs.push(last);
  setCrumbs(...crumbs);
  experimentName(id).then((name) => {
    crumbs[1].text = name;
    setCrumbs(...crumbs);
  });
}

function quickStart() {
  const origin = location.origin;
  return el("div.empty", {},
    el("h2", {}, "No traces yet"),
    el("p", {}, "Point any MLflow client at this server and run your agent. From Rust, with the mlflow-tracing SDK:"),
    el("pre", {}, `MLFLOW_TRACKING_URI=${origin} cargo run -p mlflow-tracing --example qa_agent`),
    el("p", {}, "From Python, with the official mlflow package:"),
    el("pre", {}, `import mlflow\nmlflow.set_tracking_uri("${origin}")\n\n@mlflow.trace\ndef answer(question):\n    return "42"\n\nanswer("What is the answer?")`),
    el("p", {}, "Any OpenTelemetry exporter works too: send OTLP/HTTP to ", el("code", {}, `${origin}/v1/traces`),
      " with the header ", el("code", {}, "x-mlflow-experiment-id"), "."));
}

// ---------------------------------------------------------------------------------------------------------
// Experiments

function experimentsPage() {
  setCrumbs({ text: "Experiments" });
  const body = el("div", {}, el("p.muted", {}, "Loading experiments…"));
  const node = el("section.page", {}, el("div.page-head", {}, el("h1", {}, "Experiments")), body);
  (async () => {
    try {
      const [search, stats] = await Promise.all([
        api("POST", "/2.0/mlflow/experiments/search", { max_results: 1000 }),
        api("GET", "/3.0/mlflow/experiments/trace-stats"),
      ]);
      const byId = new Map((stats.experiments ?? []).map((s) => [String(s.experiment_id), s]));
      const experiments = (search.experiments ?? []).map((e) => ({ ...e, stats: byId.get(String(e.experiment_id)) }));
      experiments.sort((a, b) => (b.stats?.last_trace_time_ms ?? 0) - (a.stats?.last_trace_time_ms ?? 0)
        || Number(b.last_update_time ?? 0) - Number(a.last_update_time ?? 0));
      experiments.forEach((e) => experimentNames.set(String(e.experiment_id), e.name));
      const rows = experiments.map((e) => el("tr", { dataset: { experimentId: e.experiment_id } },
        el("td", {}, el("a", { href: href(["experiments", e.experiment_id]) }, e.name)),
        el("td.mono", {}, e.experiment_id),
        el("td.nowrap", {}, String(e.stats?.trace_count ?? 0)),
        el("td.nowrap", {}, e.stats?.last_trace_time_ms ? formatTime(e.stats.last_trace_time_ms) : "—"),
        el("td.nowrap", {}, el("a", { href: href(["experiments", e.experiment_id, "sessions"]) }, "sessions"))));
      const total = experiments.reduce((sum, e) => sum + (e.stats?.trace_count ?? 0), 0);
      body.replaceChildren(
        el("div.table-wrap", {}, el("table.grid.experiments", {},
          el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "ID"), el("th", {}, "Traces"), el("th", {}, "Last trace"), el("th", {}, ""))),
          el("tbody", {}, rows))),
        total === 0 ? quickStart() : null);
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
  })();
  return { node };
}

// ---------------------------------------------------------------------------------------------------------
// Traces table

const TIME_RANGES = { "": "Any time", "15m": "Last 15 minutes", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days" };
const RANGE_MS = { "15m": 900e3, "1h": 3600e3, "24h": 86400e3, "7d": 604800e3 };
const SORTS = { timestamp_ms: "Request time", execution_time_ms: "Duration", name: "Name", status: "State" };

class TracesPage {
  constructor(experimentId, params) {
    this.experimentId = experimentId;
    this.filter = params.get("filter") ?? "";
    this.text = params.get("text") ?? "";
    this.state = params.get("state") ?? "";
    this.spanType = params.get("span_type") ?? "";
    this.range = params.get("range") ?? "";
    this.order = params.get("order") ?? "timestamp_ms DESC";
    this.tokens = [undefined];
    this.page = 0;
    this.selected = new Set();
    this.traces = [];
    experimentCrumbs(experimentId, { text: "Traces" });
    this.node = el("section.page.traces-page");
    this.build();
    this.load();
  }

  build() {
    const input = el("input.grow", {
      type: "search", name: "filter", value: this.filter, spellcheck: false, "aria-label": "Filter",
      placeholder: "Filter, e.g. attributes.status = 'ERROR' AND tags.env = 'prod' (Enter to search)",
    });
    const text = el("input", {
      type: "search", name: "text", value: this.text, spellcheck: false, "aria-label": "Text in spans",
      placeholder: "Text in spans",
    });
    const search = () => { this.filter = input.value.trim(); this.text = text.value.trim(); this.navigate(); };
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") search(); });
    text.addEventListener("keydown", (e) => { if (e.key === "Enter") search(); });
    const select = (name, options, value, label) => {
      const node = el("select", { name, "aria-label": label },
        Object.entries(options).map(([v, text]) => el("option", { value: v, selected: v === value }, text)));
      node.addEventListener("change", () => { this[name === "span_type" ? "spanType" : name] = node.value; this.navigate(); });
      return node;
    };
    const types = { "": "Any span type" };
    SPAN_TYPES.forEach((t) => { types[t] = `Has ${t} span`; });
    this.live = el("input", { type: "checkbox", name: "live" });
    this.live.addEventListener("change", () => this.setLive(this.live.checked));
    this.errorNode = el("div");
    this.selectionBar = el("div.selection-bar", { hidden: true });
    this.tableWrap = el("div.table-wrap", {}, el("p.muted.pad", {}, "Loading traces…"));
    this.pager = el("div.pager");
    append(this.node, [
      el("div.page-head", {}, el("h1", {}, "Traces"),
        el("nav.tabs-nav", {}, el("a.active", { href: href(["experiments", this.experimentId]) }, "Traces"),
          el("a", { href: href(["experiments", this.experimentId, "sessions"]) }, "Sessions"))),
      el("div.toolbar", {}, input, text, el("button.primary", { type: "button", onclick: search }, "Search"),
        select("state", { "": "Any state", OK: "OK", ERROR: "Error", IN_PROGRESS: "In progress" }, this.state, "State"),
        select("span_type", types, this.spanType, "Span type"),
        select("range", TIME_RANGES, this.range, "Time range"),
        el("button", { type: "button", onclick: () => this.load() }, "Refresh"),
        el("label.nowrap", {}, this.live, " Live")),
      this.errorNode, this.selectionBar, this.tableWrap, this.pager,
    ]);
  }

  navigate() {
    location.hash = href(["experiments", this.experimentId], {
      filter: this.filter, text: this.text, state: this.state, span_type: this.spanType, range: this.range,
      order: this.order === "timestamp_ms DESC" ? "" : this.order,
    });
  }

  fullFilter() {
    const parts = [];
    if (this.filter) parts.push(this.filter);
    // Any span's content; `%` and `_` in the text stay LIKE wildcards, a quote is doubled as the grammar wants.
    if (this.text) parts.push(`trace.text ILIKE '%${this.text.replaceAll("'", "''")}%'`);
    if (this.state) parts.push(`attributes.status = '${this.state}'`);
    if (this.spanType) parts.push(`span.type = '${this.spanType}'`);
    if (this.range) parts.push(`attributes.timestamp_ms > ${Date.now() - RANGE_MS[this.range]}`);
    return parts.join(" AND ");
  }

  async load() {
    const request = {
      locations: [{ type: "MLFLOW_EXPERIMENT", mlflow_experiment: { experiment_id: this.experimentId } }],
      filter: this.fullFilter(), max_results: PAGE_SIZE, order_by: [this.order],
    };
    const token = this.tokens[this.page];
    if (token) request.page_token = token;
    try {
      const reply = await api("POST", "/3.0/mlflow/traces/search", request);
      this.errorNode.replaceChildren();
      this.traces = reply.traces ?? [];
      this.tokens[this.page + 1] = reply.next_page_token;
      const known = new Set(this.traces.map((t) => t.trace_id));
      this.selected.forEach((id) => { if (!known.has(id)) this.selected.delete(id); });
      this.render();
    } catch (error) {
      this.errorNode.replaceChildren(errorBox(error));
      this.traces = [];
      this.tableWrap.replaceChildren();
      this.pager.replaceChildren();
    }
  }

  setLive(on) {
    clearInterval(this.timer);
    if (on) this.timer = setInterval(() => { if (this.page === 0) this.load(); }, 3000);
  }

  dispose() { clearInterval(this.timer); }

  sortHeader(field) {
    const [currentField, direction] = this.order.split(" ");
    const active = currentField === field;
    const arrow = active ? (direction === "ASC" ? " ▲" : " ▼") : "";
    return el("th.sortable", {
      dataset: { sort: field }, "aria-sort": active ? (direction === "ASC" ? "ascending" : "descending") : "none",
      onclick: () => { this.order = `${field} ${active && direction === "DESC" ? "ASC" : "DESC"}`; this.navigate(); },
    }, SORTS[field] + arrow);
  }

  render() {
    if (this.traces.length === 0) {
      const filtered = this.fullFilter() !== "";
      this.tableWrap.replaceChildren(filtered
        ? el("p.pad.muted.no-match", {}, "No trace matches this filter.")
        : quickStart());
      this.renderPager();
      this.renderSelection();
      return;
    }
    const all = el("input", { type: "checkbox", "aria-label": "Select all", checked: this.traces.every((t) => this.selected.has(t.trace_id)) });
    all.addEventListener("change", () => {
      this.traces.forEach((t) => (all.checked ? this.selected.add(t.trace_id) : this.selected.delete(t.trace_id)));
      this.render();
    });
    const rows = this.traces.map((info) => {
      const box = el("input", { type: "checkbox", "aria-label": `Select ${info.trace_id}`, checked: this.selected.has(info.trace_id) });
      box.addEventListener("change", () => { box.checked ? this.selected.add(info.trace_id) : this.selected.delete(info.trace_id); this.renderSelection(); });
      const tokens = tokenUsage(info);
      const session = info.trace_metadata?.[SESSION_KEY];
      const request = previewText(info.request_preview);
      const response = previewText(info.response_preview);
      return el("tr.trace-row", { dataset: { traceId: info.trace_id } },
        el("td", {}, box),
        el("td.mono.nowrap", {}, el("a", { href: href(["traces", info.trace_id]), title: info.trace_id }, info.trace_id.slice(0, 11) + "…")),
        el("td.nowrap", {}, traceName(info)),
        el("td.preview", { title: truncate(request, 2000) }, truncate(request, 300)),
        el("td.preview", { title: truncate(response, 2000) }, truncate(response, 300)),
        el("td", {}, el(`span.badge.state-${info.state}`, {}, info.state === "IN_PROGRESS" ? "IN PROGRESS" : info.state)),
        el("td.nowrap", {}, formatTime(requestTimeMs(info))),
        el("td.nowrap", {}, durationMs(info) === 0 ? "< 1 ms" : formatDuration(durationMs(info))),
        el("td.nowrap.optional", {}, tokens?.total_tokens != null ? String(tokens.total_tokens) : ""),
        el("td.nowrap.optional", {}, session ? el("a", { href: href(["experiments", this.experimentId, "sessions", session]) }, session) : ""),
        el("td.nowrap.optional", {}, info.trace_metadata?.[USER_KEY] ?? ""),
        el("td.optional", {}, userTags(info.tags).map(([k, v]) => el("span.chip", { title: `${k}=${v}` }, `${k}=${v}`))));
    });
    this.tableWrap.replaceChildren(el("table.grid.traces", {},
      el("thead", {}, el("tr", {}, el("th", {}, all), el("th", {}, "Trace ID"), this.sortHeader("name"), el("th", {}, "Request"),
        el("th", {}, "Response"), this.sortHeader("status"), this.sortHeader("timestamp_ms"), this.sortHeader("execution_time_ms"),
        el("th.optional", {}, "Tokens"), el("th.optional", {}, "Session"), el("th.optional", {}, "User"), el("th.optional", {}, "Tags"))),
      el("tbody", {}, rows)));
    this.renderPager();
    this.renderSelection();
  }

  renderPager() {
    const first = this.page * PAGE_SIZE + 1;
    this.pager.replaceChildren(
      el("span.muted", {}, this.traces.length ? `${first}–${first + this.traces.length - 1}` : ""),
      el("button", { type: "button", disabled: this.page === 0, onclick: () => { this.page -= 1; this.load(); } }, "‹ Previous"),
      el("button", { type: "button", disabled: !this.tokens[this.page + 1], onclick: () => { this.page += 1; this.load(); } }, "Next ›"));
  }

  renderSelection() {
    const count = this.selected.size;
    this.selectionBar.hidden = count === 0;
    if (!count) return;
    const key = el("input", { type: "text", name: "tag-key", placeholder: "tag key", size: 12 });
    const value = el("input", { type: "text", name: "tag-value", placeholder: "value", size: 12 });
    const ids = [...this.selected];
    const remove = el("button.danger", { type: "button" }, `Delete ${count}`);
    remove.addEventListener("click", async () => {
      if (!remove.dataset.armed) {
        remove.dataset.armed = "1";
        remove.textContent = `Really delete ${count} trace${count > 1 ? "s" : ""}?`;
        return;
      }
      try {
        await api("POST", "/3.0/mlflow/traces/delete-traces", { experiment_id: this.experimentId, request_ids: ids });
        this.selected.clear();
        toast(`Deleted ${ids.length} trace${ids.length > 1 ? "s" : ""}`);
        this.load();
      } catch (error) { this.errorNode.replaceChildren(errorBox(error)); }
    });
    const tag = async (deleting) => {
      const k = key.value.trim();
      if (!k) { key.focus(); return; }
      try {
        await Promise.all(ids.map((id) => deleting
          ? api("DELETE", `/2.0/mlflow/traces/${encodeURIComponent(id)}/tags`, { key: k }).catch((e) => { if (e.status !== 404) throw e; })
          : api("PATCH", `/2.0/mlflow/traces/${encodeURIComponent(id)}/tags`, { key: k, value: value.value })));
        toast(deleting ? `Removed tag ${k}` : `Tagged ${ids.length} trace${ids.length > 1 ? "s" : ""}`);
        this.load();
      } catch (error) { this.errorNode.replaceChildren(errorBox(error)); }
    };
    this.selectionBar.replaceChildren(el("b", {}, `${count} selected`), key, value,
      el("button", { type: "button", onclick: () => tag(false) }, "Add tag"),
      el("button", { type: "button", onclick: () => tag(true) }, "Remove tag"), remove,
      el("button.link", { type: "button", onclick: () => { this.selected.clear(); this.render(); } }, "Clear"));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Sessions: traces grouped by mlflow.trace.session, read top to bottom.

async function searchAll(experimentId, filter, order, limit) {
  const traces = [];
  let token;
  do {
    const request = { locations: [{ type: "MLFLOW_EXPERIMENT", mlflow_experiment: { experiment_id: experimentId } }], filter, max_results: 500, order_by: [order] };
    if (token) request.page_token = token;
    const reply = await api("POST", "/3.0/mlflow/traces/search", request);
    traces.push(...(reply.traces ?? []));
    token = reply.next_page_token;
  } while (token && traces.length < limit);
  return traces;
}

function sessionsPage(experimentId) {
  experimentCrumbs(experimentId, { text: "Sessions" });
  const body = el("div", {}, el("p.muted", {}, "Loading sessions…"));
  const node = el("section.page", {},
    el("div.page-head", {}, el("h1", {}, "Sessions"),
      el("nav.tabs-nav", {}, el("a", { href: href(["experiments", experimentId]) }, "Traces"),
        el("a.active", { href: href(["experiments", experimentId, "sessions"]) }, "Sessions"))),
    body);
  (async () => {
    try {
      const traces = await searchAll(experimentId, `metadata.\`${SESSION_KEY}\` IS NOT NULL`, "timestamp_ms DESC", 5000);
      const sessions = new Map();
      for (const info of traces) {
        const id = info.trace_metadata[SESSION_KEY];
        const entry = sessions.get(id) ?? { id, traces: [], users: new Set() };
        entry.traces.push(info);
        if (info.trace_metadata[USER_KEY]) entry.users.add(info.trace_metadata[USER_KEY]);
        sessions.set(id, entry);
      }
      if (sessions.size === 0) {
        body.replaceChildren(el("div.empty", {}, el("h2", {}, "No sessions"),
          el("p", {}, "A session groups the traces of one conversation. Record it with ",
            el("code", {}, "update_current_trace(session_id = …)"), " in the SDK or ", el("code", {}, "mlflow.update_current_trace(session_id=…)"),
            " in Python; OTLP spans may carry ", el("code", {}, "session.id"), ".")));
        return;
      }
      const rows = [...sessions.values()].map((s) => {
        const times = s.traces.map(requestTimeMs);
        const first = s.traces[s.traces.length - 1];
        const errors = s.traces.filter((t) => t.state === "ERROR").length;
        return el("tr.session-row", { dataset: { session: s.id } },
          el("td", {}, el("a", { href: href(["experiments", experimentId, "sessions", s.id]) }, s.id)),
          el("td", {}, String(s.traces.length)),
          el("td.nowrap", {}, formatTime(Math.min(...times))),
          el("td.nowrap", {}, formatTime(Math.max(...times))),
          el("td", {}, [...s.users].join(", ")),
          el("td", {}, errors ? el("span.badge.state-ERROR", {}, `${errors} error${errors > 1 ? "s" : ""}`) : ""),
          el("td.preview", {}, truncate(previewText(first.request_preview), 200)));
      });
      body.replaceChildren(el("div.table-wrap", {}, el("table.grid", {},
        el("thead", {}, el("tr", {}, ["Session", "Traces", "First", "Last", "User", "Errors", "First request"].map((t) => el("th", {}, t)))),
        el("tbody", {}, rows))));
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
  })();
  return { node };
}

function sessionPage(experimentId, sessionId) {
  experimentCrumbs(experimentId, { text: `Session ${sessionId}` });
  const body = el("div", {}, el("p.muted", {}, "Loading…"));
  const node = el("section.page", {}, el("div.page-head", {}, el("h1", {}, `Session ${sessionId}`),
    el("a", { href: href(["experiments", experimentId, "sessions"]) }, "All sessions")), body);
  (async () => {
    try {
      const quoted = sessionId.replace(/\\/g, "\\\\").replace(/'/g, "\\'");
      const traces = await searchAll(experimentId, `metadata.\`${SESSION_KEY}\` = '${quoted}'`, "timestamp_ms ASC", 2000);
      body.replaceChildren(...traces.map((info, index) => el("div.session-turn", { dataset: { traceId: info.trace_id } },
        el("div.meta", {}, el("b", {}, `Turn ${index + 1}`), formatTime(requestTimeMs(info)), formatDuration(durationMs(info)),
          el(`span.badge.state-${info.state}`, {}, info.state), el("a", { href: href(["traces", info.trace_id]) }, "open trace")),
        el("div.chat", {},
          el("div.msg.user", {}, el("div.role", {}, info.trace_metadata?.[USER_KEY] ?? "user"), el("div.text", {}, previewText(info.request_preview))),
          el("div.msg.assistant", {}, el("div.role", {}, traceName(info) || "assistant"), el("div.text", {}, previewText(info.response_preview)))))));
      if (!traces.length) body.replaceChildren(el("p.muted", {}, "No traces in this session."));
    } catch (error) {
      body.replaceChildren(errorBox(error));
    }
  })();
  return { node };
}

// ---------------------------------------------------------------------------------------------------------
// Span attribute values (OTLP AnyValue as JSON) and the JSON viewer

function anyValue(value) {
  if (!value || typeof value !== "object") return value ?? null;
  if ("string_value" in value) return value.string_value;
  if ("int_value" in value) return Number(value.int_value);
  if ("double_value" in value) return value.double_value;
  if ("bool_value" in value) return value.bool_value;
  if ("array_value" in value) return (value.array_value.values ?? []).map(anyValue);
  if ("kvlist_value" in value) return Object.fromEntries((value.kvlist_value.values ?? []).map((kv) => [kv.key, anyValue(kv.value)]));
  if ("bytes_value" in value) return value.bytes_value;
  return null;
}

/** MLflow writes attribute values as JSON text; show them as the values they encode. */
function decodeAttribute(raw) {
  if (typeof raw !== "string") return raw;
  try { return JSON.parse(raw); } catch { return raw; }
}

function attributesOf(list) {
  const out = {};
  for (const kv of list ?? []) out[kv.key] = decodeAttribute(anyValue(kv.value));
  return out;
}

function longString(text, className) {
  const node = el(`span.${className}`);
  if (text.length <= LONG_TEXT) {
    node.textContent = text;
    return node;
  }
  const more = el("button.link", { type: "button" }, `show all ${text.length.toLocaleString()} characters`);
  node.textContent = text.slice(0, LONG_TEXT) + "…";
  more.addEventListener("click", (e) => { e.stopPropagation(); node.textContent = text; more.remove(); });
  return el("span", {}, node, " ", more);
}

function jsonNode(value, depth = 0) {
  if (value === null || value === undefined) return el("span.z", {}, "null");
  if (typeof value === "string") return longString(JSON.stringify(value).length > LONG_TEXT ? value : JSON.stringify(value), "s");
  if (typeof value === "number") return el("span.n", {}, String(value));
  if (typeof value === "boolean") return el("span.b", {}, String(value));
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (entries.length === 0) return el("span.z", {}, isArray ? "[]" : "{}");
  const details = el("details", { open: depth < 3 });
  details.append(el("summary", {}, isArray ? `[ ${entries.length} item${entries.length > 1 ? "s" : ""} ]` : `{ ${entries.length} key${entries.length > 1 ? "s" : ""} }`));
  const box = el("div");
  const shown = 200;
  const renderEntries = (from, to) => {
    for (const [key, item] of entries.slice(from, to)) {
      box.append(el("div", {}, el("span.k", {}, isArray ? `${key}` : JSON.stringify(key)), ": ", jsonNode(item, depth + 1)));
    }
  };
  renderEntries(0, shown);
  if (entries.length > shown) {
    const more = el("button.link", { type: "button" }, `show ${entries.length - shown} more`);
    more.addEventListener("click", () => { more.remove(); renderEntries(shown, entries.length); });
    box.append(more);
  }
  details.append(box);
  return details;
}

function jsonViewer(value, testId) {
  return el("div.viewer.json", { dataset: { testid: testId } },
    copyButton(() => typeof value === "string" ? value : JSON.stringify(value, null, 2)), jsonNode(value));
}

// ---------------------------------------------------------------------------------------------------------
// Chat rendering for LLM and CHAT_MODEL spans

function messageText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => typeof part === "string" ? part : part?.text ?? (part?.type ? `[${part.type}]` : "")).join("\n");
  }
  return content == null ? "" : JSON.stringify(content);
}

function chatMessages(inputs, outputs, attributes) {
  let messages = attributes["mlflow.chat.messages"];
  if (!Array.isArray(messages)) {
    const isConversation = (value) => Array.isArray(value) && value.length > 0 && value.every((m) => m && typeof m === "object" && m.role);
    // `{"messages": [...]}` as OpenAI clients take it, a bare list, or any argument holding one (a traced
    // call records its arguments by expression).
    const found = isConversation(inputs) ? inputs : isConversation(inputs?.messages) ? inputs.messages
      : inputs && typeof inputs === "object" ? Object.values(inputs).find(isConversation) : null;
    messages = found ? [...found] : null;
    if (!messages) return null;
    const reply = outputs?.choices?.[0]?.message ?? (outputs?.role ? outputs : outputs?.message?.role ? outputs.message : null);
    if (reply) messages.push(reply);
    else if (typeof outputs === "string") messages.push({ role: "assistant", content: outputs });
  }
  return messages.filter((m) => m && typeof m === "object");
}

function chatView(messages) {
  return el("div.chat", { dataset: { testid: "chat" } }, messages.map((m) => {
    const role = String(m.role ?? "message");
    return el(`div.msg.${role.replace(/[^a-z_]/gi, "")}`, {},
      el("div.role", {}, m.name ? `${role} · ${m.name}` : role, m.tool_call_id ? ` · ${m.tool_call_id}` : ""),
      m.content != null && m.content !== "" ? el("div.text", {}, messageText(m.content)) : null,
      (m.tool_calls ?? []).map((call) => el("div.tool-call", {},
        `→ ${call.function?.name ?? call.name ?? "tool"}(${typeof call.function?.arguments === "string" ? call.function.arguments : JSON.stringify(call.function?.arguments ?? call.arguments ?? {})})`)));
  }));
}

// ---------------------------------------------------------------------------------------------------------
// Trace view: header, virtualised span tree + timeline, span details

class TracePage {
  constructor(traceId, params) {
    this.traceId = traceId;
    this.tab = "io";
    this.node = el("div.trace-page", {}, el("p.muted.pad", {}, "Loading trace…"));
    setCrumbs({ text: "Experiments", href: "#/" }, { text: traceId });
    this.load(params);
  }

  async load(params) {
    try {
      const [infoReply, outline] = await Promise.all([
        api("GET", `/3.0/mlflow/traces/${encodeURIComponent(this.traceId)}`),
        api("GET", `/3.0/mlflow/traces/${encodeURIComponent(this.traceId)}/span-outline`),
      ]);
      this.info = infoReply.trace.trace_info;
      this.prepare(outline);
      this.build();
      this.update(params, true);
      requestAnimationFrame(() => {
        this.node.dataset.ready = "1";
        // Time from navigation start to the first painted tree, read by the browser tests' measurement.
        window.__traceReadyAt = performance.now();
      });
    } catch (error) {
      this.node.replaceChildren(el("div.pad", {}, errorBox(error), el("p", {}, el("a", { href: "#/" }, "Back to experiments"))));
    }
  }

  prepare(outline) {
    const n = outline.span_count;
    this.o = outline;
    this.n = n;
    this.parent = Int32Array.from(outline.parent);
    this.start = Float64Array.from(outline.start_ns);
    this.duration = Float64Array.from(outline.duration_ns, (d) => d ?? -1);
    this.rowOf = new Map(outline.span_id.map((id, i) => [id, i]));
    let end = 0;
    for (let i = 0; i < n; i++) end = Math.max(end, this.start[i] + Math.max(this.duration[i], 0));
    this.total = Math.max(end, 1);
    // Children in start order (rows already are), roots, depths.
    const counts = new Int32Array(n + 1);
    for (let i = 0; i < n; i++) if (this.parent[i] >= 0) counts[this.parent[i]]++;
    this.childStart = new Int32Array(n + 1);
    for (let i = 0; i < n; i++) this.childStart[i + 1] = this.childStart[i] + counts[i];
    this.children = new Int32Array(this.childStart[n]);
    const fill = this.childStart.slice(0, n);
    const roots = [];
    for (let i = 0; i < n; i++) {
      const p = this.parent[i];
      if (p >= 0) this.children[fill[p]++] = i;
      else roots.push(i);
    }
    this.depth = new Int32Array(n).fill(-1);
    const stack = [...roots].reverse().map((r) => [r, 0]);
    const visit = () => {
      while (stack.length) {
        const [i, d] = stack.pop();
        if (this.depth[i] >= 0) continue;
        this.depth[i] = d;
        for (let c = this.childStart[i + 1] - 1; c >= this.childStart[i]; c--) stack.push([this.children[c], d + 1]);
      }
    };
    visit();
    // Spans cut off from every root (a parent cycle) are shown as roots rather than lost.
    for (let i = 0; i < n; i++) {
      if (this.depth[i] < 0) { roots.push(i); stack.push([i, 0]); visit(); }
    }
    this.roots = roots;
    this.expanded = new Uint8Array(n);
    const all = n <= 2000;
    for (let i = 0; i < n; i++) this.expanded[i] = all || this.depth[i] < 1 ? 1 : 0;
    this.keep = null;
    this.selected = -1;
  }

  hasChildren(i) { return this.childStart[i + 1] > this.childStart[i]; }

  computeVisible() {
    const out = new Int32Array(this.n);
    let count = 0;
    const stack = [];
    for (let r = this.roots.length - 1; r >= 0; r--) stack.push(this.roots[r]);
    while (stack.length) {
      const i = stack.pop();
      if (this.keep && !this.keep[i]) continue;
      out[count++] = i;
      if (this.expanded[i]) for (let c = this.childStart[i + 1] - 1; c >= this.childStart[i]; c--) stack.push(this.children[c]);
    }
    this.visible = out.subarray(0, count);
    this.positionOf = null;
    // Sized now, so a scroll to a row set before the next frame is not clamped to the old height.
    this.spacer.style.height = `${count * ROW_HEIGHT}px`;
  }

  indexInVisible(i) {
    if (!this.positionOf) {
      this.positionOf = new Int32Array(this.n).fill(-1);
      this.visible.forEach((span, index) => { this.positionOf[span] = index; });
    }
    return this.positionOf[i];
  }

  build() {
    const info = this.info;
    const tokens = tokenUsage(info);
    const session = info.trace_metadata?.[SESSION_KEY];
    const experimentId = info.trace_location?.mlflow_experiment?.experiment_id;
    if (experimentId) experimentCrumbs(experimentId, { text: this.traceId });
    const name = traceName(info) || (this.roots.length ? this.o.name[this.roots[0]] : this.traceId);
    this.tagBox = el("span.tags");
    this.renderTags();
    const head = el("header.trace-head", {},
      el("div.title", {}, el("h1", {}, name), el(`span.badge.state-${info.state}`, { dataset: { testid: "trace-state" } }, info.state),
        el("code.muted", { dataset: { testid: "trace-id" } }, this.traceId), copyButton(this.traceId, "Copy id")),
      el("div.facts", {},
        el("span", {}, "Duration ", el("b", {}, formatDuration(this.roots.length && this.duration[this.roots[0]] >= 0 ? this.duration[this.roots[0]] / 1e6 : durationMs(info)))),
        el("span", {}, "Started ", el("b", {}, formatTime(requestTimeMs(info)))),
        el("span", {}, "Spans ", el("b", { dataset: { testid: "span-count" } }, this.n.toLocaleString())),
        tokens ? el("span", {}, "Tokens ", el("b", {}, `${tokens.total_tokens ?? "?"} (${tokens.input_tokens ?? "?"} in, ${tokens.output_tokens ?? "?"} out)`)) : null,
        session && experimentId ? el("span", {}, "Session ", el("a", { href: href(["experiments", experimentId, "sessions", session]) }, session)) : null,
        info.trace_metadata?.[USER_KEY] ? el("span", {}, "User ", el("b", {}, info.trace_metadata[USER_KEY])) : null),
      el("div.facts", {}, "Tags", this.tagBox));

    const search = el("input", { type: "search", name: "span-search", placeholder: "Search spans by name", "aria-label": "Search spans" });
    search.addEventListener("input", () => { clearTimeout(this.searchTimer); this.searchTimer = setTimeout(() => this.applyFilter(), 150); });
    const errors = el("input", { type: "checkbox", name: "only-errors" });
    errors.addEventListener("change", () => this.applyFilter());
    const typesPresent = [...new Set(this.o.span_type)].sort();
    const type = el("select", { name: "span-type", "aria-label": "Span type" }, el("option", { value: "" }, "All types"),
      typesPresent.map((t) => el("option", { value: t }, t)));
    type.addEventListener("change", () => this.applyFilter());
    this.controls = { search, errors, type };
    this.list = el("div.vlist", { tabindex: 0, role: "tree", "aria-label": "Spans" });
    this.spacer = el("div.vspacer");
    this.list.append(this.spacer);
    this.list.addEventListener("scroll", () => this.scheduleRender());
    this.list.addEventListener("keydown", (e) => this.onKey(e));
    new ResizeObserver(() => this.scheduleRender()).observe(this.list);
    this.matchCount = el("span.muted");
    const axis = el("div.axis", {}, [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const label = el("span", {}, formatDuration((this.total * f) / 1e6));
      label.style.left = `${f * 100}%`;
      return label;
    }));
    const treePane = el("section.tree-pane", {},
      el("div.tree-tools", {}, search, type, el("label.nowrap", {}, errors, " Only errors"),
        el("button", { type: "button", onclick: () => this.expandAll(true) }, "Expand all"),
        el("button", { type: "button", onclick: () => this.expandAll(false) }, "Collapse"), this.matchCount),
      el("div.tree-head", {}, el("span"), axis),
      this.list);
    this.detail = el("section.detail-pane", {}, el("p.muted.pad", {}, "Select a span to see its inputs, outputs, attributes and events."));
    this.node.replaceChildren(head, el("div.trace-body", {}, treePane, this.detail));
    this.computeVisible();
  }

  renderTags() {
    const tags = userTags(this.info.tags);
    const key = el("input", { type: "text", name: "new-tag-key", placeholder: "key", size: 10 });
    const value = el("input", { type: "text", name: "new-tag-value", placeholder: "value", size: 10 });
    const form = el("form.toolbar", { hidden: true }, key, value, el("button", { type: "submit" }, "Add"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (!key.value.trim()) return;
      try {
        await api("PATCH", `/2.0/mlflow/traces/${encodeURIComponent(this.traceId)}/tags`, { key: key.value.trim(), value: value.value });
        this.info.tags = { ...this.info.tags, [key.value.trim()]: value.value };
        this.renderTags();
      } catch (error) { toast(error.message); }
    });
    this.tagBox.replaceChildren(
      ...tags.map(([k, v]) => el("span.chip", { dataset: { tag: k } }, `${k}=${v}`, el("button", {
        type: "button", title: `Remove tag ${k}`, "aria-label": `Remove tag ${k}`,
        onclick: async () => {
          try {
            await api("DELETE", `/2.0/mlflow/traces/${encodeURIComponent(this.traceId)}/tags`, { key: k });
            delete this.info.tags[k];
            this.renderTags();
          } catch (error) { toast(error.message); }
        },
      }, "×"))),
      el("button.link", { type: "button", onclick: () => { form.hidden = !form.hidden; key.focus(); } }, "+ tag"), form);
  }

  /** Called on a route change within this trace (a deep link to another span). */
  update(params, first = false) {
    const spanId = params.get("span");
    const target = spanId ? this.rowOf.get(spanId.toLowerCase()) : undefined;
    if (target !== undefined) {
      this.reveal(target);
      this.select(target, { scroll: true, route: false });
    } else if (first && this.n) {
      this.select(this.roots[0], { scroll: false, route: false });
    }
    this.scheduleRender();
  }

  reveal(i) {
    let changed = false;
    for (let p = this.parent[i]; p >= 0 && !this.expanded[p]; p = this.parent[p]) { this.expanded[p] = 1; changed = true; }
    if (this.keep && !this.keep[i]) {
      this.keep = null;
      this.highlight = "";
      this.matchCount.textContent = "";
      this.controls.search.value = "";
      this.controls.errors.checked = false;
      this.controls.type.value = "";
      changed = true;
    }
    if (changed) this.computeVisible();
  }

  applyFilter() {
    const text = this.controls.search.value.trim().toLowerCase();
    const errorsOnly = this.controls.errors.checked;
    const type = this.controls.type.value;
    this.highlight = text;
    if (!text && !errorsOnly && !type) {
      this.keep = null;
      this.matchCount.textContent = "";
    } else {
      const keep = new Uint8Array(this.n);
      let matches = 0;
      for (let i = 0; i < this.n; i++) {
        if (errorsOnly && this.o.status[i] !== "ERROR") continue;
        if (type && this.o.span_type[i] !== type) continue;
        if (text && !this.o.name[i].toLowerCase().includes(text)) continue;
        matches++;
        for (let p = i; p >= 0 && !keep[p]; p = this.parent[p]) { keep[p] = 1; if (p !== i) this.expanded[p] = 1; }
      }
      this.keep = keep;
      this.matchCount.textContent = `${matches.toLocaleString()} match${matches === 1 ? "" : "es"}`;
    }
    this.computeVisible();
    this.list.scrollTop = 0;
    this.scheduleRender();
  }

  expandAll(open) {
    this.expanded.fill(open ? 1 : 0);
    if (!open) for (const r of this.roots) this.expanded[r] = 1;
    this.computeVisible();
    this.scheduleRender();
  }

  toggle(i) {
    if (!this.hasChildren(i)) return;
    this.expanded[i] ^= 1;
    this.computeVisible();
    this.scheduleRender();
  }

  scheduleRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.renderRows(); });
  }

  renderRows() {
    if (!this.visible) return;
    const count = this.visible.length;
    const top = this.list.scrollTop;
    const height = this.list.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - 10);
    const last = Math.min(count, Math.ceil((top + height) / ROW_HEIGHT) + 10);
    const rows = [];
    for (let v = first; v < last; v++) rows.push(this.row(this.visible[v], v));
    this.spacer.replaceChildren(...rows);
  }

  row(i, position) {
    const o = this.o;
    const type = o.span_type[i];
    const error = o.status[i] === "ERROR";
    const duration = this.duration[i];
    const caret = this.hasChildren(i)
      ? el("button.caret", { type: "button", tabindex: -1, "aria-label": this.expanded[i] ? "Collapse" : "Expand",
        onclick: (e) => { e.stopPropagation(); this.toggle(i); } }, this.expanded[i] ? "▾" : "▸")
      : el("span.caret", {}, "");
    const name = el("span.name");
    const text = o.name[i];
    const at = this.highlight ? text.toLowerCase().indexOf(this.highlight) : -1;
    if (at >= 0) append(name, [text.slice(0, at), el("mark", {}, text.slice(at, at + this.highlight.length)), text.slice(at + this.highlight.length)]);
    else name.textContent = text;
    const label = el("div.label", {}, caret, el(`span.type-tag.${SPAN_TYPES.includes(type) && type !== "UNKNOWN" ? `t-${type}` : "t-other"}`, { title: type }, typeLabel(type)), name,
      error ? el("span.err", { title: "This span failed" }, "!") : null,
      el("span.dur", {}, duration >= 0 ? formatDuration(duration / 1e6) : "running"));
    label.style.paddingLeft = `${4 + this.depth[i] * 16}px`;
    const bar = el(`div.bar.${SPAN_TYPES.includes(type) && type !== "UNKNOWN" ? `t-${type}` : "t-other"}`, {
      title: `${text}: starts at +${formatDuration(this.start[i] / 1e6)}, ${duration >= 0 ? `lasts ${formatDuration(duration / 1e6)}` : "still running"}`,
      dataset: { start: this.start[i] },
    });
    if (error) bar.classList.add("err");
    bar.style.left = `${(this.start[i] / this.total) * 100}%`;
    bar.style.width = `${(Math.max(duration, 0) / this.total) * 100}%`;
    const row = el("div.span-row", {
      role: "treeitem", "aria-level": this.depth[i] + 1, "aria-selected": i === this.selected ? "true" : "false",
      "aria-expanded": this.hasChildren(i) ? String(!!this.expanded[i]) : null,
      dataset: { spanId: o.span_id[i], row: position, status: o.status[i], type },
      onclick: () => this.select(i, { scroll: false, route: true }),
      ondblclick: () => this.toggle(i),
    }, label, el("div.lane", {}, bar));
    if (i === this.selected) row.classList.add("selected");
    row.style.top = `${position * ROW_HEIGHT}px`;
    return row;
  }

  onKey(e) {
    if (!this.visible?.length) return;
    const position = this.selected >= 0 ? this.indexInVisible(this.selected) : -1;
    const go = (v) => { const clamped = Math.max(0, Math.min(this.visible.length - 1, v)); this.select(this.visible[clamped], { scroll: true, route: true }); };
    const i = this.selected;
    switch (e.key) {
      case "ArrowDown": go(position + 1); break;
      case "ArrowUp": go(position < 0 ? 0 : position - 1); break;
      case "Home": go(0); break;
      case "End": go(this.visible.length - 1); break;
      case "PageDown": go(position + Math.floor(this.list.clientHeight / ROW_HEIGHT)); break;
      case "PageUp": go(position - Math.floor(this.list.clientHeight / ROW_HEIGHT)); break;
      case "ArrowRight":
        if (i < 0) go(0);
        else if (this.hasChildren(i) && !this.expanded[i]) this.toggle(i);
        else if (this.hasChildren(i)) go(position + 1);
        break;
      case "ArrowLeft":
        if (i < 0) break;
        if (this.hasChildren(i) && this.expanded[i]) this.toggle(i);
        else if (this.parent[i] >= 0) this.select(this.parent[i], { scroll: true, route: true });
        break;
      case "Enter": case " ":
        if (i >= 0) this.toggle(i);
        break;
      default: return;
    }
    e.preventDefault();
  }

  select(i, { scroll, route }) {
    if (i < 0 || i >= this.n) return;
    this.selected = i;
    if (scroll) {
      let v = this.indexInVisible(i);
      if (v < 0) { this.reveal(i); v = this.indexInVisible(i); }
      const top = v * ROW_HEIGHT;
      const height = this.list.clientHeight || 600;
      if (top < this.list.scrollTop || top + ROW_HEIGHT > this.list.scrollTop + height) this.list.scrollTop = Math.max(0, top - height / 3);
    }
    if (route) history.replaceState(null, "", href(["traces", this.traceId], { span: this.o.span_id[i] }));
    this.scheduleRender();
    this.showSpan(i);
  }

  async showSpan(i) {
    const spanId = this.o.span_id[i];
    this.loading = spanId;
    let span;
    try {
      span = (await api("GET", `/3.0/mlflow/traces/${encodeURIComponent(this.traceId)}/spans/${spanId}`)).span;
    } catch (error) {
      if (this.loading === spanId) this.detail.replaceChildren(el("div.pad", {}, errorBox(error)));
      return;
    }
    if (this.loading !== spanId) return;
    this.detail.replaceChildren(...this.spanDetail(i, span));
    this.detail.dataset.spanId = spanId;
  }

  spanDetail(i, span) {
    const attributes = attributesOf(span.attributes);
    const inputs = attributes["mlflow.spanInputs"];
    const outputs = attributes["mlflow.spanOutputs"];
    const type = this.o.span_type[i];
    const usage = attributes["mlflow.chat.tokenUsage"];
    const cost = attributes["mlflow.llm.cost"];
    const messages = (type === "LLM" || type === "CHAT_MODEL") ? chatMessages(inputs, outputs, attributes) : null;
    const status = span.status ?? {};
    const statusCode = this.o.status[i];
    const events = span.events ?? [];
    const head = el("header.detail-head", {},
      el("h2", {}, el(`span.type-tag.${SPAN_TYPES.includes(type) && type !== "UNKNOWN" ? `t-${type}` : "t-other"}`, {}, type), this.o.name[i],
        el(`span.badge.state-${statusCode === "ERROR" ? "ERROR" : "OK"}`, { dataset: { testid: "span-status" } }, statusCode)),
      el("div.facts", {},
        el("span", {}, "Duration ", el("b", {}, this.duration[i] >= 0 ? formatDuration(this.duration[i] / 1e6) : "running")),
        el("span", {}, "Starts at ", el("b", {}, `+${formatDuration(this.start[i] / 1e6)}`)),
        el("span", {}, "Span ", el("code", {}, this.o.span_id[i])), copyButton(this.o.span_id[i], "Copy id"),
        copyButton(() => location.origin + location.pathname + href(["traces", this.traceId], { span: this.o.span_id[i] }), "Copy link")),
      status.message ? el("div.filter-error", {}, status.message) : null,
      usage || cost ? el("div.facts", { dataset: { testid: "usage" } },
        usage ? el("span", {}, "Tokens ", el("b", {}, `${usage.input_tokens ?? "?"} in · ${usage.output_tokens ?? "?"} out · ${usage.total_tokens ?? "?"} total`)) : null,
        cost ? el("span", {}, "Cost ", el("b", {}, typeof cost === "object" ? `$${Number(cost.total_cost ?? 0).toFixed(6)}` : String(cost))) : null) : null);

    const tabs = [];
    if (messages?.length) tabs.push(["chat", "Chat"]);
    tabs.push(["io", "Inputs / Outputs"], ["attributes", `Attributes (${Object.keys(attributes).filter((k) => k !== "mlflow.spanInputs" && k !== "mlflow.spanOutputs").length})`], ["events", `Events (${events.length})`]);
    let tab = tabs.some(([key]) => key === this.tab) ? this.tab : tabs[0][0];
    if (tab === "io" && messages?.length && !this.tabChosen) tab = "chat";
    const body = el("div.detail-body");
    const nav = el("nav.tabs-nav", { role: "tablist" });
    const show = (key) => {
      tab = key;
      nav.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.tab === key));
      body.replaceChildren(...this.tabContent(key, { inputs, outputs, attributes, events, messages, span }));
    };
    tabs.forEach(([key, label]) => nav.append(el("button", { type: "button", role: "tab", dataset: { tab: key },
      onclick: () => { this.tab = key; this.tabChosen = true; show(key); } }, label)));
    show(tab);
    return [head, nav, body];
  }

  tabContent(key, { inputs, outputs, attributes, events, messages, span }) {
    if (key === "chat") return [chatView(messages)];
    if (key === "io") {
      return [el("div.section-title", {}, "Inputs"), inputs === undefined ? el("p.muted", {}, "No inputs recorded.") : jsonViewer(inputs, "inputs"),
        el("div.section-title", {}, "Outputs"), outputs === undefined ? el("p.muted", {}, "No outputs recorded.") : jsonViewer(outputs, "outputs")];
    }
    if (key === "attributes") {
      const entries = Object.entries(attributes).filter(([k]) => k !== "mlflow.spanInputs" && k !== "mlflow.spanOutputs").sort(([a], [b]) => a.localeCompare(b));
      if (!entries.length) return [el("p.muted", {}, "No attributes.")];
      return [el("div.kv", { dataset: { testid: "attributes" } }, entries.flatMap(([k, v]) => [el("div.key", {}, k),
        typeof v === "object" && v !== null ? jsonViewer(v) : longString(String(v), "value")]))];
    }
    if (!events.length) return [el("p.muted", {}, "No events.")];
    const spanStart = Number(span.start_time_unix_nano ?? 0);
    return events.map((event) => {
      const attrs = attributesOf(event.attributes);
      const offset = event.time_unix_nano ? formatDuration((Number(event.time_unix_nano) - spanStart) / 1e6) : "";
      if (event.name === "exception") {
        return el("div.event.exception", { dataset: { testid: "exception" } },
          el("div", {}, el("b", {}, "Exception "), el("code", {}, String(attrs["exception.type"] ?? "")), offset ? el("span.muted", {}, ` at +${offset}`) : null),
          el("div", {}, String(attrs["exception.message"] ?? "")),
          attrs["exception.stacktrace"] ? el("pre.stack", {}, String(attrs["exception.stacktrace"])) : null);
      }
      const rest = Object.entries(attrs);
      return el("div.event", {}, el("div", {}, el("b", {}, event.name), offset ? el("span.muted", {}, ` at +${offset}`) : null),
        rest.length === 1 ? jsonViewer(rest[0][1]) : rest.length ? jsonViewer(attrs) : null);
    });
  }

  dispose() { cancelAnimationFrame(this.frame); }
}

function typeLabel(type) {
  const labels = { LLM: "LLM", CHAT_MODEL: "CHAT", CHAIN: "CHAIN", AGENT: "AGENT", TOOL: "TOOL", RETRIEVER: "RETR", EMBEDDING: "EMB", RERANKER: "RANK", PARSER: "PARSE", MEMORY: "MEM", WORKFLOW: "FLOW", TASK: "TASK", GUARDRAIL: "GUARD", EVALUATOR: "EVAL" };
  return labels[type] ?? (type === "UNKNOWN" ? "SPAN" : type.slice(0, 5));
}

window.addEventListener("hashchange", route);
route();
