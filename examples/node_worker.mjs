// A TaskManager worker in plain Node.js (20+, global fetch): no SDK, only the HTTP API.
//
//   node examples/node_worker.mjs [MAX_TASKS]
//
// Reads TASKMANAGER_API_URL (default http://127.0.0.1:8000) and TASKMANAGER_API_KEY. Handles
// `example.greet` tasks: long-polls for one (the server holds the claim up to 10 s until a task
// arrives), completes it with its lease token, and exits after MAX_TASKS tasks (default: never).

import os from "node:os";

const base = (process.env.TASKMANAGER_API_URL ?? "http://127.0.0.1:8000").replace(/\/+$/, "").replace(/\/api$/, "") + "/api";
const key = process.env.TASKMANAGER_API_KEY;
const workerId = `node-${os.hostname()}-${process.pid}`;
const maxTasks = Number(process.argv[2] ?? Infinity);

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(base + path, { method: "POST", headers, body: JSON.stringify(body) });
  const envelope = await response.json();
  if (!envelope.success) throw new Error(`${path}: ${response.status} ${envelope.code} ${envelope.message}`);
  return envelope.data;
}

let stopping = false;
process.on("SIGTERM", () => { stopping = true; });
process.on("SIGINT", () => { stopping = true; });

let done = 0;
while (done < maxTasks && !stopping) {
  // limit: 1 answers 200 with an empty list when nothing came (instead of 404 No available tasks).
  const claimed = await post("/tasks/claim", { worker_id: workerId, types: ["example.greet"], limit: 1, wait: 10 });
  for (const task of claimed.tasks) {
    const message = `${task.params.greeting ?? "Hello"}, ${task.params.name}!`;
    try {
      await post(`/tasks/${task.id}/progress`, { worker_id: workerId, lease_token: task.lease_token, progress: 50 });
      const result = await post(`/tasks/${task.id}/complete`, {
        worker_id: workerId, lease_token: task.lease_token, success: true, result: { message, by: "node" },
      });
      console.log(`task ${task.id} ${result.status}: ${message}`);
    } catch (error) {
      // 409 lease_lost: the lease expired and the task went to another worker; drop it.
      console.error(`task ${task.id}: ${error.message}`);
    }
    done += 1;
  }
}
console.log(`node worker ${workerId} done after ${done} tasks`);
