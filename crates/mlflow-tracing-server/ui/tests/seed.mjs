// Traces for the browser tests, sent over OTLP/JSON as any OpenTelemetry exporter would.

export function hex(length) {
  let out = "";
  for (let i = 0; i < length; i++) out += "0123456789abcdef"[Math.floor(Math.random() * 16)];
  return out;
}

export function spanJson({ traceId, spanId, parentSpanId, name, start, end, type, inputs, outputs, error }) {
  const attributes = [{ key: "mlflow.spanType", value: { stringValue: type } }];
  if (inputs !== undefined) attributes.push({ key: "mlflow.spanInputs", value: { stringValue: JSON.stringify(inputs) } });
  if (outputs !== undefined) attributes.push({ key: "mlflow.spanOutputs", value: { stringValue: JSON.stringify(outputs) } });
  const span = {
    traceId, spanId, name, startTimeUnixNano: String(start), endTimeUnixNano: String(end), attributes,
    status: error ? { code: 2, message: error } : { code: 1 },
  };
  if (parentSpanId) span.parentSpanId = parentSpanId;
  if (error) {
    span.events = [{ name: "exception", timeUnixNano: String(end), attributes: [
      { key: "exception.type", value: { stringValue: "ToolError" } },
      { key: "exception.message", value: { stringValue: error } },
      { key: "exception.stacktrace", value: { stringValue: `ToolError: ${error}\n  at step (agent.rs:12)` } }] }];
  }
  return span;
}

/** Posts spans to `base`/v1/traces in batches of 10,000, into an experiment. */
export async function sendSpans(base, experimentId, spans) {
  for (let offset = 0; offset < spans.length; offset += 10000) {
    const response = await fetch(`${base}/v1/traces`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-mlflow-experiment-id": experimentId },
      body: JSON.stringify({ resourceSpans: [{ resource: { attributes: [] },
        scopeSpans: [{ scope: { name: "ui-test" }, spans: spans.slice(offset, offset + 10000) }] }] }),
    });
    if (response.status !== 200) throw new Error(`OTLP export failed: ${response.status} ${await response.text()}`);
  }
}

/** A root agent span with `steps` children, each with `leaves` children; returns the trace id and a deep span. */
export function generatedTrace(name, steps, leaves) {
  const traceId = hex(32);
  const rootId = hex(16);
  const t0 = Date.now() * 1e6 - 60e9;
  const spans = [];
  let deep;
  for (let s = 0; s < steps; s++) {
    const stepId = hex(16);
    const stepStart = t0 + 1e6 + s * 1e6;
    for (let l = 0; l < leaves; l++) {
      const leafId = hex(16);
      const failed = s === 7 && l === 3;
      spans.push(spanJson({ traceId, spanId: leafId, parentSpanId: stepId, name: `leaf-${s}-${l}`, type: l % 2 ? "RETRIEVER" : "TOOL",
        start: stepStart + l * 5e3, end: stepStart + l * 5e3 + 4e3, inputs: { step: s, leaf: l }, outputs: { ok: !failed },
        error: failed ? `leaf ${s}-${l} failed` : undefined }));
      if (s === Math.floor(steps / 2) && l === Math.floor(leaves / 2)) deep = { spanId: leafId, name: `leaf-${s}-${l}` };
    }
    spans.push(spanJson({ traceId, spanId: stepId, parentSpanId: rootId, name: `step-${s}`, type: "LLM",
      start: stepStart, end: stepStart + 9e5, inputs: { messages: [{ role: "user", content: `step ${s}` }] },
      outputs: { role: "assistant", content: `done ${s}` } }));
  }
  spans.push(spanJson({ traceId, spanId: rootId, name, type: "AGENT", start: t0, end: t0 + 2e6 + steps * 1e6,
    inputs: { task: name }, outputs: { steps } }));
  return { traceId: `tr-${traceId}`, spans, deep };
}

