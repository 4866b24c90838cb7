"""Exercises MLflow Tracing with the official Python client against MLFLOW_TRACKING_URI, then reads every trace
back and prints them normalized (ids and times masked) as JSON, so runs against two servers can be compared."""

import asyncio
import json
import sys
import time

import mlflow
from mlflow import MlflowClient
from mlflow.entities import SpanEvent, SpanType


@mlflow.trace(span_type=SpanType.RETRIEVER)
def retrieve(q):
    return [{"page_content": f"doc about {q}", "metadata": {"doc_uri": "http://x/1"}, "id": "1"}]


@mlflow.trace(name="pipeline", span_type=SpanType.CHAIN, attributes={"team": "rust", "n": 3})
def pipeline(question, k=2):
    docs = retrieve(question)
    with mlflow.start_span(name="llm_call", span_type=SpanType.CHAT_MODEL) as span:
        span.set_inputs({"messages": [{"role": "user", "content": question}]})
        span.set_attributes({"model": "fake-model", "temperature": 0.1, "tags_list": ["a", "b"]})
        span.add_event(SpanEvent("thinking", attributes={"step": 1, "note": "hi"}))
        answer = f"answer to {question} using {len(docs)} docs"
        span.set_outputs({"content": answer})
    mlflow.update_current_trace(tags={"env": "test"}, metadata={"custom.meta": "m1"}, session_id="sess-1", user="alice")
    return answer


@mlflow.trace
def failing(x):
    raise ValueError(f"boom {x}")


@mlflow.trace
def stream(n):
    for i in range(n):
        yield {"chunk": i}


@mlflow.trace
async def async_add(a, b):
    await asyncio.sleep(0.01)
    return a + b


def client_walkthrough(client):
    root = client.start_trace("client_root", inputs={"question": "q"}, tags={"origin": "client"})
    child = client.start_span("client_child", trace_id=root.trace_id, parent_id=root.span_id, inputs={"x": 1})
    client.end_span(trace_id=root.trace_id, span_id=child.span_id, outputs={"y": 2})
    client.end_trace(trace_id=root.trace_id, outputs={"answer": "a"})
    return root.trace_id


def normalize(trace):
    info, spans = trace.info, sorted(trace.data.spans, key=lambda span: span.start_time_ns)
    names = {span.span_id: span.name for span in spans}
    masked_metadata = {"mlflow.trace.sizeBytes", "mlflow.trace.sizeStats", "mlflow.source.name", "mlflow.user"}
    masked_metadata |= {key for key in info.trace_metadata if key.startswith("mlflow.source.git.")}
    assessments = sorted(
        (
            {
                "name": assessment.name,
                "value": getattr(assessment, "value", None),
                "rationale": assessment.rationale,
                "valid": assessment.valid,
                "source": str(assessment.source.source_type),
                "overrides_something": bool(assessment.overrides),
            }
            for assessment in info.assessments
        ),
        key=lambda assessment: (assessment["name"], str(assessment["value"])),
    )
    return {
        "name": info.tags.get("mlflow.traceName"),
        "assessments": assessments,
        "state": str(info.state),
        "request_preview": info.request_preview,
        "response_preview": info.response_preview,
        "tags": {key: value for key, value in info.tags.items() if key != "mlflow.artifactLocation"},
        "metadata": {key: value for key, value in info.trace_metadata.items() if key not in masked_metadata},
        "spans": [
            {
                "name": span.name,
                "parent": names.get(span.parent_id),
                "type": span.span_type,
                "status": str(span.status.status_code),
                "inputs": span.inputs,
                "outputs": span.outputs,
                "attributes": {
                    key: value
                    for key, value in span.attributes.items()
                    if key not in ("mlflow.traceRequestId",)
                },
                "events": [event.name for event in span.events],
            }
            for span in spans
        ],
    }


def next_millisecond():
    """Traces are ordered by their millisecond start time, and two traces started in the same millisecond come back in
    the order of their random ids, so each trace starts in a millisecond of its own."""
    time.sleep(0.003)


def main():
    mlflow.set_experiment("compat")
    pipeline("what is mlflow?")
    next_millisecond()
    try:
        failing(7)
    except ValueError:
        pass
    next_millisecond()
    list(stream(3))
    next_millisecond()
    asyncio.run(async_add(1, 2))
    next_millisecond()
    client = MlflowClient()
    client_trace_id = client_walkthrough(client)
    mlflow.flush_trace_async_logging()

    experiment = mlflow.get_experiment_by_name("compat")
    traces = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    by_name = {trace.info.tags.get("mlflow.traceName"): trace for trace in traces}
    client.set_trace_tag(client_trace_id, "after", "yes")
    pipeline_id = by_name["pipeline"].info.trace_id
    feedback = mlflow.log_feedback(
        trace_id=pipeline_id, name="helpful", value=True, rationale="ok",
        source=mlflow.entities.AssessmentSource(source_type="HUMAN", source_id="bob"),
    )
    mlflow.log_expectation(trace_id=pipeline_id, name="expected", value="answer")
    mlflow.override_feedback(trace_id=pipeline_id, assessment_id=feedback.assessment_id, value=False, rationale="on reflection")
    client.delete_trace_tag(client_trace_id, "origin")
    readback = [normalize(mlflow.get_trace(trace.info.trace_id)) for trace in traces]
    filters = [
        "status = 'OK'",
        "trace.status = 'ERROR'",
        "tags.env = 'test'",
        "tags.`mlflow.traceName` LIKE 'pipe%'",
        "metadata.`mlflow.trace.session` = 'sess-1'",
        "span.type = 'RETRIEVER'",
        "attributes.status != 'OK'",
        "span.name LIKE 'client%'",
    ]
    filtered = {
        filter_string: sorted(
            trace.info.tags.get("mlflow.traceName")
            for trace in mlflow.search_traces(
                locations=[experiment.experiment_id], filter_string=filter_string, return_type="list"
            )
        )
        for filter_string in filters
    }
    ordered = [
        trace.info.tags.get("mlflow.traceName")
        for trace in mlflow.search_traces(
            locations=[experiment.experiment_id], order_by=["timestamp_ms ASC"], return_type="list"
        )
    ]
    deleted = client.delete_traces(experiment.experiment_id, trace_ids=[by_name["failing"].info.trace_id])
    remaining = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    json.dump(
        {
            "traces": sorted(readback, key=lambda trace: trace["name"] or ""),
            "filtered": filtered,
            "ordered": ordered,
            "deleted": deleted,
            "remaining": sorted(trace.info.tags.get("mlflow.traceName") for trace in remaining),
        },
        sys.stdout,
        indent=1,
        sort_keys=True,
        default=str,
    )


if __name__ == "__main__":
    main()
