#!/usr/bin/env bash
# Compatibility with the official mlflow client (PyPI, in a venv this script creates):
#  1. the same client program against our server and a real `mlflow server`: normalized results must be equal;
#  2. our Rust examples exporting to the real `mlflow server`, read back with the official client;
#  3. our Rust examples exporting to our server, read back with the official client.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MLFLOW_VERSION=3.17.2
VENV=target/compat-venv
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! "$VENV/bin/python" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION"
fi
cargo build --quiet --locked -p mlflow-tracing-server -p mlflow-tracing --examples --bin mlflow-tracing

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "server on port $1 did not start"; return 1
}

REAL_PORT=$(free_port)
"$VENV/bin/mlflow" server --host 127.0.0.1 --port "$REAL_PORT" --workers 1 \
  --backend-store-uri "sqlite:///$WORK/real.db" --artifacts-destination "$WORK/real-artifacts" >"$WORK/real.log" 2>&1 &
PIDS+=($!)
OURS_PORT=$(free_port)
target/debug/mlflow-tracing server --port "$OURS_PORT" --backend-store-uri "sqlite:///$WORK/ours.db" >"$WORK/ours.log" 2>&1 &
PIDS+=($!)
wait_ready "$OURS_PORT"
wait_ready "$REAL_PORT" || { tail -20 "$WORK/real.log"; exit 1; }

echo "== 1. the official client against both servers"
MLFLOW_TRACKING_URI="http://127.0.0.1:$REAL_PORT" "$VENV/bin/python" compat/client_program.py >"$WORK/real.json" 2>"$WORK/real.err"
MLFLOW_TRACKING_URI="http://127.0.0.1:$OURS_PORT" "$VENV/bin/python" compat/client_program.py >"$WORK/ours.json" 2>"$WORK/ours.err"
if grep -q "WARNING" "$WORK/ours.err"; then echo "client warnings against our server:"; cat "$WORK/ours.err"; exit 1; fi
python3 - "$WORK/real.json" "$WORK/ours.json" <<'PY'
import json, sys
real, ours = (json.load(open(path)) for path in sys.argv[1:])
if real != ours:
    import difflib
    lines = lambda value: json.dumps(value, indent=1, sort_keys=True).splitlines()
    print("\n".join(difflib.unified_diff(lines(real), lines(ours), "mlflow server", "mlflow-tracing server", lineterm="")))
    sys.exit("the official client saw different results")
print(f"identical: {len(ours['traces'])} traces, {sum(len(t['spans']) for t in ours['traces'])} spans, {len(ours['filtered'])} filtered searches, ordering, tags, deletes")
PY

for target in "real:$REAL_PORT" "ours:$OURS_PORT"; do
  name=${target%%:*}; port=${target##*:}
  echo "== Rust examples -> $name server, read back with the official client"
  for example in qa_agent client_api async_agent failing_tool; do
    MLFLOW_TRACKING_URI="http://127.0.0.1:$port" MLFLOW_EXPERIMENT_NAME=rust-examples \
      "target/debug/examples/$example" >/dev/null
  done
  MLFLOW_TRACKING_URI="http://127.0.0.1:$port" "$VENV/bin/python" compat/read_back.py rust-examples
done
echo "compat: 3 passed, 0 failed"
