# Shared by dev.sh and test.sh: process bookkeeping so nothing outlives the command.
VENV_BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin"
PIDS=()

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a command in its own process group and remembers it for cleanup.
start_bg() {
  local log="$1"; shift
  setsid "$@" >"$log" 2>&1 &
  PIDS+=($!)
}

stop_all() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  PIDS=()
}

start_moto() {
  local port="$1" log="$2"
  start_bg "$log" "$VENV_BIN/moto_server" -H 127.0.0.1 -p "$port"
  "$VENV_BIN/python" scripts/local_stack.py wait --endpoint "http://127.0.0.1:$port" --timeout 60
}
