#!/usr/bin/env bash
# The README's "Scaling out" recipe, whole, on one machine over loopback: a PostgreSQL catalog, a
# Prefect server, a process work pool with two workers, two OpenAI-compatible vLLM servers (one per
# shard). It queues the two shards as flow runs, builds one dataset, then runs the same config in a
# single process and checks that both give the same rows and the same dataset files
# (bench/fleet_compare.py). tests/flows/test_fleet_loopback.py runs this script; the lines between
# "recipe" and "end of recipe" are the README's commands, and that test checks they stay the same.
#
#   bench/fleet_loopback.sh            # everything throwaway, under a new temporary folder
#
# Optional environment: PRMFORGE_CATALOG (postgres:<libpq string> of an empty database; else a
# throwaway PostgreSQL cluster is started, as root through runuser), PREFECT_API_URL (a running
# Prefect server; else one is started), FLEET_DIR (the working folder), FLEET_MODEL (the served
# model; default the embedded policy), VLLM_FLAGS (default the CPU settings), FLEET_POOL,
# FLEET_PROBLEMS (default 8), FLEET_POLICY (default `vllm`: the two servers; a policy spec such as
# `simulated` runs the same recipe with that policy on both shards and no servers, as the CI test
# does). With the vLLM servers about 6-9 minutes on 2 busy CPU cores, most of it vLLM and Prefect
# starting up; with `simulated` about 2-3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"
WORK=${FLEET_DIR:-$(mktemp -d -t prmforge-fleet-XXXXXX)}
MODEL=${FLEET_MODEL:-$ROOT/tasks/policies/embedded}
VLLM_FLAGS=${VLLM_FLAGS:---enforce-eager --dtype float32 --block-size 32 --kv-cache-memory-bytes 256M}
POOL=${FLEET_POOL:-prmforge}
PROBLEMS=${FLEET_PROBLEMS:-8}
FLEET_POLICY=${FLEET_POLICY:-vllm}  # vllm: two servers of FLEET_MODEL; else a policy spec for both shards
mkdir -p "$WORK"
export PRMFORGE_OPENAI_API_KEY=${PRMFORGE_OPENAI_API_KEY:-loopback-key-not-secret}
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_HOME=${PREFECT_HOME:-$WORK/prefect-home}

started=()  # process groups this script started, stopped on exit
cleanup() {  # TERM, then KILL what is left after 20 s (a Prefect 3.7 worker can hang on TERM)
  for group in "${started[@]}"; do kill -TERM -- "-$group" 2>/dev/null || true; done
  for _ in $(seq 20); do
    alive=0
    for group in "${started[@]}"; do kill -0 -- "-$group" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 1
  done
  for group in "${started[@]}"; do kill -KILL -- "-$group" 2>/dev/null || true; done
  if [[ -n "${PG_ROOT:-}" ]]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_ROOT/data" -m fast -w stop >/dev/null || true
    cp "$PG_ROOT/server.log" "$WORK/postgres.log" 2>/dev/null || true
    rm -rf "$PG_ROOT"
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # a stopped script still stops what it started (the EXIT trap)
background() {  # background LOG COMMAND...: in its own process group, so that cleanup stops all of it
  local log=$1; shift
  setsid "$@" >"$log" 2>&1 &
  started+=($!)
}
free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for URL LOG: until URL answers 200 (with the API key), or fail showing LOG
  python - "$1" "$2" <<'EOF'
import os, sys, time
import httpx
url, log = sys.argv[1], sys.argv[2]
headers = {"Authorization": f"Bearer {os.environ['PRMFORGE_OPENAI_API_KEY']}"}
for _ in range(400):
    try:
        if httpx.get(url, headers=headers, timeout=2).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(1)
sys.exit(f"{url} did not come up; the end of {log}:\n" + open(log).read()[-3000:])
EOF
}
as_postgres() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [[ -z "${PRMFORGE_CATALOG:-}" ]]; then  # a throwaway PostgreSQL cluster on 127.0.0.1
  PG_BIN=$(dirname "$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
  # Its own folder under /tmp, owned by the postgres user where this runs as root: WORK may lie
  # where that user cannot reach (pytest's tmp_path is private to root).
  PG_ROOT=$(mktemp -d -t prmforge-fleet-postgres-XXXXXX) PG_PORT=$(free_port)
  mkdir -p "$PG_ROOT/sockets"
  if [[ $(id -u) == 0 ]]; then chown -R postgres "$PG_ROOT"; fi
  as_postgres "$PG_BIN/initdb" -D "$PG_ROOT/data" -U postgres --auth=trust --no-sync >/dev/null
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_ROOT/data" -l "$PG_ROOT/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_ROOT/sockets -c fsync=off" start
  as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres prmforge
  export PRMFORGE_CATALOG="postgres:host=127.0.0.1 port=$PG_PORT dbname=prmforge user=postgres"
fi
export PRMFORGE_DATA_PATH="$WORK/shared/lake/"  # the storage every machine mounts; here one folder
# Everything that starts slowly starts at once; then the script waits for each.
if [[ -z "${PREFECT_API_URL:-}" ]]; then
  PREFECT_PORT=$(free_port)
  background "$WORK/prefect-server.log" prefect server start --host 127.0.0.1 --port "$PREFECT_PORT"
  export PREFECT_API_URL="http://127.0.0.1:$PREFECT_PORT/api"
fi
if [[ "$FLEET_POLICY" == vllm ]]; then
  PORTS=("$(free_port)" "$(free_port)")
  for i in 0 1; do  # one vLLM server per shard ("gpu-0", "gpu-1")
    # shellcheck disable=SC2086  # VLLM_FLAGS is a list of flags
    background "$WORK/vllm-$i.log" python -m vllm.entrypoints.openai.api_server --model "$MODEL" \
      --served-model-name policy --host 127.0.0.1 --port "${PORTS[$i]}" --api-key "$PRMFORGE_OPENAI_API_KEY" \
      $VLLM_FLAGS
    POLICIES[i]="openai:http://127.0.0.1:${PORTS[$i]}/v1/policy"
  done
else  # the simulated policy on both shards: the same recipe without the servers (the CI test)
  POLICIES=("$FLEET_POLICY" "$FLEET_POLICY")
fi
if [[ -n "${PREFECT_PORT:-}" ]]; then wait_for "$PREFECT_API_URL/health" "$WORK/prefect-server.log"; fi
if [[ "$FLEET_POLICY" == vllm ]]; then
  for i in 0 1; do wait_for "http://127.0.0.1:${PORTS[$i]}/v1/models" "$WORK/vllm-$i.log"; done
fi

# --- recipe (the README's commands) ---
prefect work-pool create "$POOL" --type process --overwrite
prefect --no-prompt deploy flows/generate.py:generate_flow --name shard --pool "$POOL"
for i in 0 1; do
  PRMFORGE_DATA_DIR="$WORK/worker-$i" setsid prefect worker start --pool "$POOL" --limit 1 --name "worker-$i" \
    > "$WORK/worker-$i.log" 2>&1 &
  started+=("$!")
done
for i in 0 1; do
  prefect deployment run prmforge-generate/shard --watch --watch-timeout 1800 --param warehouse='{}' \
    --param config="{\"problems\": $PROBLEMS, \"samples\": 2, \"rollouts\": 2, \"seed\": 3, \"shard\": \"$i/2\",
      \"publish_dataset\": false, \"policy\": \"${POLICIES[$i]}\"}" \
    > "$WORK/shard-$i.log" 2>&1 &
  shards[i]=$!
done
if ! { wait "${shards[0]}" && wait "${shards[1]}"; }; then
  tail -n 40 "$WORK"/shard-*.log "$WORK"/worker-*.log
  exit 1
fi
prmforge dataset build --seed 3 --data-dir "$WORK/builder"
# --- end of recipe ---

# The same config in one process, on a local catalog, sampling from the first server.
PRMFORGE_CATALOG=sqlite PRMFORGE_DATA_PATH="" prmforge generate --problems "$PROBLEMS" --samples 2 --rollouts 2 \
  --seed 3 --policy "${POLICIES[0]}" --data-dir "$WORK/single"
python bench/fleet_compare.py --fleet-data-dir "$WORK/builder" --single-data-dir "$WORK/single"
