#!/usr/bin/env bash
# A TaskManager worker in bash: curl for HTTP, python3 for JSON. No SDK, only the HTTP API.
#
#   bash examples/curl_worker.sh [MAX_TASKS]
#
# Reads TASKMANAGER_API_URL (default http://127.0.0.1:8000) and TASKMANAGER_API_KEY. Handles
# `example.greet` tasks: long-polls for one, completes it with its lease token, and exits after
# MAX_TASKS tasks (default: run until Ctrl-C).
set -euo pipefail

API="${TASKMANAGER_API_URL:-http://127.0.0.1:8000}"
API="${API%/}"; API="${API%/api}/api"
WORKER_ID="bash-$(hostname)-$$"
MAX_TASKS="${1:-0}"   # 0: no limit
AUTH=()
if [[ -n "${TASKMANAGER_API_KEY:-}" ]]; then AUTH=(-H "X-API-Key: ${TASKMANAGER_API_KEY}"); fi

post() {  # post PATH JSON -> the response body; fails on a transport error
  curl -sS --max-time 30 -X POST "${AUTH[@]}" -H 'Content-Type: application/json' -d "$2" "$API$1"
}

# field JSON EXPR: evaluate a Python expression over the parsed body `r` (its "data" is `d`).
field() {
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); d = r.get("data") or {}; print(eval(sys.argv[2]))' "$1" "$2"
}

trap 'echo "stopping"; MAX_TASKS=-1' TERM INT
done_count=0
while [[ "$MAX_TASKS" -eq 0 || "$done_count" -lt "$MAX_TASKS" ]]; do
  # limit 1: an empty claim is 200 with "tasks": [] ; wait 10: the server holds it until a task comes.
  claimed=$(post /tasks/claim "{\"worker_id\": \"$WORKER_ID\", \"types\": [\"example.greet\"], \"limit\": 1, \"wait\": 10}")
  if [[ "$(field "$claimed" 'r["success"]')" != "True" ]]; then
    echo "claim failed: $(field "$claimed" 'r.get("message")')" >&2
    sleep 5
    continue
  fi
  [[ "$(field "$claimed" 'd["count"]')" -eq 0 ]] && continue

  task_id=$(field "$claimed" 'd["tasks"][0]["id"]')
  token=$(field "$claimed" 'd["tasks"][0]["lease_token"]')
  message=$(field "$claimed" 'd["tasks"][0]["params"].get("greeting", "Hello") + ", " + d["tasks"][0]["params"]["name"] + "!"')

  body=$(python3 -c 'import json, sys; print(json.dumps({"worker_id": sys.argv[1], "lease_token": sys.argv[2], "success": True, "result": {"message": sys.argv[3], "by": "bash"}}))' "$WORKER_ID" "$token" "$message")
  completed=$(post "/tasks/$task_id/complete" "$body")
  echo "task $task_id $(field "$completed" 'd.get("status") or r.get("message")'): $message"
  done_count=$((done_count + 1))
done
echo "bash worker $WORKER_ID done after $done_count tasks"
