#!/usr/bin/env bash
# Compatibility with the official mlflow client (PyPI, in venvs this script creates):
#  1. the same 3.x client program against our server and a real `mlflow server`: normalized results equal;
#  2. the same with the 2.x client (v2 write protocol, v2 traces.json);
#  3. our Rust examples exporting to the real `mlflow server`, read back with the official client;
#  4. our Rust examples exporting to our server, read back with the official client.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MLFLOW_VERSION=3.17.2
MLFLOW_2_VERSION=2.22.1
VENV=target/compat-venv
VENV_2=target/compat-venv-2
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/*.err "$WORK"/*.log; do
      [ -s "$log" ] && { echo "--- $log (last lines)"; tail -n 25 "$log"; }
    done
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

if ! "$VENV/bin/python" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION"
fi
if ! "$VENV_2/bin/python" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_2_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV_2"
  "$VENV_2/bin/pip" install --quiet --disable-pip-version-check "mlflow==$MLFLOW_2_VERSION"
  # MLflow 2.x's span processor breaks with OpenTelemetry SDK releases after 1.26 ('_shutdown' missing).
  "$VENV_2/bin/pip" install --quiet --disable-pip-version-check "opentelemetry-api==1.25.0" "opentelemetry-sdk==1.25.0"
  "$VENV_2/bin/python" -c "import opentelemetry.sdk.trace"
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
compare() {
  python3 - "$1" "$2" <<'PY'
import json, sys
real, ours = (json.load(open(path)) for path in sys.argv[1:])
if real != ours:
    import difflib
    lines = lambda value: json.dumps(value, indent=1, sort_keys=True).splitlines()
    print("\n".join(difflib.unified_diff(lines(real), lines(ours), "mlflow server", "mlflow-tracing server", lineterm="")))
    sys.exit("the official client saw different results")
assert ours["traces"], "no traces were read back"
print(f"identical: {len(ours['traces'])} traces, {sum(len(t['spans']) for t in ours['traces'])} spans, {len(ours['filtered'])} filtered searches")
PY
}
compare "$WORK/real.json" "$WORK/ours.json"

echo "== 2. the 2.x client (v2 protocol) against both servers"
MLFLOW_TRACKING_URI="http://127.0.0.1:$REAL_PORT" "$VENV_2/bin/python" compat/client_program_v2.py >"$WORK/real2.json" 2>"$WORK/real2.err"
MLFLOW_TRACKING_URI="http://127.0.0.1:$OURS_PORT" "$VENV_2/bin/python" compat/client_program_v2.py >"$WORK/ours2.json" 2>"$WORK/ours2.err"
if grep -q "WARNING" "$WORK/ours2.err"; then echo "2.x client warnings against our server:"; cat "$WORK/ours2.err"; exit 1; fi
compare "$WORK/real2.json" "$WORK/ours2.json"

for target in "real:$REAL_PORT" "ours:$OURS_PORT"; do
  name=${target%%:*}; port=${target##*:}
  echo "== Rust examples -> $name server, read back with the official client (3, 4)"
  for example in qa_agent client_api async_agent failing_tool; do
    MLFLOW_TRACKING_URI="http://127.0.0.1:$port" MLFLOW_EXPERIMENT_NAME=rust-examples \
      "target/debug/examples/$example" >/dev/null
  done
  MLFLOW_TRACKING_URI="http://127.0.0.1:$port" "$VENV/bin/python" compat/read_back.py rust-examples
done
echo "compat: 4 passed, 0 failed"
