"""Checks that an example printed one or more MLflow traces (`Trace.to_json()` documents) on stdin."""

import json
import sys


def main() -> None:
    name = sys.argv[1]
    text = sys.stdin.read()
    decoder = json.JSONDecoder()
    position, traces = 0, []
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            break
        trace, position = decoder.raw_decode(text, position)
        traces.append(trace)
    if not traces:
        sys.exit(f"{name}: printed no trace")
    for trace in traces:
        info, spans = trace["info"], trace["data"]["spans"]
        if not info["trace_id"].startswith("tr-") or not spans:
            sys.exit(f"{name}: not an MLflow trace: {info}")
        if info["state"] not in ("OK", "ERROR"):
            sys.exit(f"{name}: unexpected state {info['state']}")
        roots = [span for span in spans if span["parent_span_id"] is None]
        if len(roots) != 1:
            sys.exit(f"{name}: expected one root span, found {len(roots)}")
    span_count = sum(len(trace["data"]["spans"]) for trace in traces)
    print(f"{name}: {len(traces)} trace(s), {span_count} spans")


if __name__ == "__main__":
    main()
