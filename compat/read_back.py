"""Reads the traces of one experiment with the official client and checks the trees the Rust examples make.

Usage: read_back.py EXPERIMENT_NAME (MLFLOW_TRACKING_URI names the server)."""

import sys

import mlflow

EXPECTED = {
    # root name: (state, {span name: parent name})
    "predict": ("OK", {"predict": None, "chat_completions_create": "predict", "_final_answer": "predict"}),
    "qa_request": ("OK", {"qa_request": None, "similarity_search": "qa_request"}),
    "planner_agent": (
        "OK",
        {"planner_agent": None, "plan": "planner_agent", "weather": "planner_agent", "calendar": "planner_agent",
         "search_notes": "planner_agent", "summarize": "planner_agent"},
    ),
}


def main():
    experiment = mlflow.get_experiment_by_name(sys.argv[1])
    assert experiment is not None, f"experiment {sys.argv[1]} not found"
    traces = mlflow.search_traces(locations=[experiment.experiment_id], return_type="list")
    roots = {}
    for trace in traces:
        full = mlflow.get_trace(trace.info.trace_id)
        spans = full.data.spans
        names = {span.span_id: span.name for span in spans}
        root = next(span for span in spans if span.parent_id is None)
        roots.setdefault(root.name, []).append((str(full.info.state), {span.name: names.get(span.parent_id) for span in spans}, full))
    for name, (state, tree) in EXPECTED.items():
        assert name in roots, f"no trace rooted at {name}; found {sorted(roots)}"
        got_state, got_tree, full = roots[name][0]
        assert got_state.endswith(state), f"{name}: state {got_state}"
        assert got_tree == tree, f"{name}: tree {got_tree}"
    predict = roots["predict"][0][2]
    final = next(span for span in predict.data.spans if span.name == "_final_answer")
    assert final.attributes["model_name"] == "gpt-4o-mini", final.attributes
    assert final.outputs.startswith("MLflow is"), final.outputs
    assert predict.info.request_preview == '{"question":"What is MLflow?"}', predict.info.request_preview
    failing = [entry for entry in roots.get("convert", []) if entry[0].endswith("ERROR")]
    assert failing, "the failing tool's ERROR trace is missing"
    tool = next(span for span in failing[0][2].data.spans if span.name == "exchange_rate")
    assert str(tool.status.status_code).endswith("ERROR") and tool.events[0].name == "exception", tool.events
    print(f"{sys.argv[1]}: {len(traces)} traces read back with the official client, trees as expected")


if __name__ == "__main__":
    main()
