"""The MLflow 2.x client (v2 trace API: StartTrace, traces.json upload, EndTrace) against MLFLOW_TRACKING_URI;
prints the traces read back, normalized, so runs against two servers can be compared."""

import json
import sys

import mlflow
from mlflow import MlflowClient
from mlflow.entities import SpanType


@mlflow.trace(span_type=SpanType.RETRIEVER)
def retrieve(q):
    return [f"doc about {q}"]


@mlflow.trace(name="pipeline", span_type=SpanType.CHAIN, attributes={"team": "rust"})
def pipeline(question):
    docs = retrieve(question)
    with mlflow.start_span(name="llm_call", span_type=SpanType.CHAT_MODEL) as span:
        span.set_inputs({"messages": [{"role": "user", "content": question}]})
        span.set_outputs({"content": f"answer using {len(docs)} docs"})
    return f"answer to {question}"


@mlflow.trace
def failing(x):
    raise ValueError(f"boom {x}")


def normalize(trace):
    spans = sorted(trace.data.spans, key=lambda span: span.start_time_ns)
    names = {span.span_id: span.name for span in spans}
    return {
        "name": trace.info.tags.get("mlflow.traceName"),
        "status": str(trace.info.status),
        "inputs": trace.info.request_metadata.get("mlflow.traceInputs"),
        "outputs": trace.info.request_metadata.get("mlflow.traceOutputs"),
        "user_tags": {key: value for key, value in trace.info.tags.items() if not key.startswith("mlflow.")},
        "spans": [
            {"name": span.name, "parent": names.get(span.parent_id), "type": span.span_type,
             "status": str(span.status.status_code), "inputs": span.inputs, "outputs": span.outputs}
            for span in spans
        ],
    }


def main():
    mlflow.set_experiment("compat-v2")
    pipeline("what is mlflow?")
    try:
        failing(7)
    except ValueError:
        pass
    client = MlflowClient()
    root = client.start_trace("client_root", inputs={"q": 1}, tags={"origin": "client"})
    child = client.start_span("client_child", request_id=root.request_id, parent_id=root.span_id, inputs={"x": 1})
    client.end_span(request_id=root.request_id, span_id=child.span_id, outputs={"y": 2})
    client.end_trace(request_id=root.request_id, outputs={"answer": "a"})
    experiment = mlflow.get_experiment_by_name("compat-v2")
    traces = client.search_traces([experiment.experiment_id])
    client.set_trace_tag(root.request_id, "after", "yes")
    filtered = client.search_traces([experiment.experiment_id], filter_string="tags.after = 'yes'")
    readback = [normalize(client.get_trace(trace.info.request_id)) for trace in traces]
    json.dump(
        {"traces": sorted(readback, key=lambda trace: trace["name"] or ""),
         "filtered": sorted(trace.info.tags.get("mlflow.traceName") for trace in filtered)},
        sys.stdout, indent=1, sort_keys=True, default=str,
    )


if __name__ == "__main__":
    main()
