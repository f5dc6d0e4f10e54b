# Shared by the pipeline checks (sourced; the caller defines fail MESSAGE).

# The frame lines of a JSON-lines results file so far (0 before it exists).
frames_in() { if [ -f "$1" ]; then grep -c '"type":"frame"' "$1" || true; else echo 0; fi; }

# Runs "$@" (a pipeline writing $results) until $want frame lines, then SIGINT, as
# systemd stops a camera service; it must end by itself with status 0 within 60 s.
run_until() {
  local results=$1 want=$2 log=$3
  shift 3
  "$@" > "$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1200); do
    [ "$(frames_in "$results")" -ge "$want" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    tail -20 "$log"
    fail "$* did not end within 60 s of SIGINT"
  fi
  local status=0
  wait "$pid" || status=$?
  [ "$status" -eq 0 ] || { tail -20 "$log"; fail "$* exited $status after SIGINT"; }
  [ "$(frames_in "$results")" -ge "$want" ] || { tail -20 "$log"; fail "$*: $(frames_in "$results") frame lines, not $want"; }
}
