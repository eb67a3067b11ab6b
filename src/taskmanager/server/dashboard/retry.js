// "Retry all failed" of one task type: one POST /tasks/bulk, or on a server older than that
// route (it answers 404), each failed task retried on its own.

import { ApiError } from "./api.js";

// Without a bulk route: failed tasks read a page at a time, and retried a few at once.
const PAGE = 100;
const PARALLEL = 4;

// How many tasks it retried; show(text) is told the progress. Throws what stops it.
export async function retryAllFailed(api, type, show) {
  const retried = bulkRoute ? await retryInBulk(api, type) : null;
  return retried ?? (await retryEach(api, type, show));
}

// Fatal for a whole run: the key was refused, or it may not retry.
const refusedKey = (error) => error instanceof ApiError && (error.status === 401 || error.status === 403);
let bulkRoute = true; // until the server answers POST /tasks/bulk with "Endpoint not found"

// POST /tasks/bulk (API.md B.5) where the server has it: how many it retried, or null without it.
async function retryInBulk(api, type) {
  try {
    const done = await api.post("tasks/bulk", { action: "retry", filter: { type, status: "failed" } });
    return done.changed;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    bulkRoute = false;
    return null;
  }
}

// Without a bulk route: read the type's failed tasks a page at a time and retry each, a few at
// once. A retried task leaves the failed list, so each page is read from the start of the list,
// past the tasks already tried that are failed still (a refused retry, or one that failed again
// meanwhile): each task is tried once. A task failing first during the run may be left for
// another click.
async function retryEach(api, type, show) {
  const tried = new Set();
  let retried = 0;
  let skip = 0;
  const total = (await api.get("tasks", { status: "failed", type, limit: 1 })).total;
  show(`Retrying failed ${type}: 0 of ${total}`);
  for (;;) {
    const page = await api.get("tasks", { status: "failed", type, limit: PAGE, offset: skip });
    if (page.tasks.length === 0) return retried;
    const fresh = page.tasks.filter((task) => !tried.has(task.id));
    skip += page.tasks.length - fresh.length;
    for (let i = 0; i < fresh.length; i += PARALLEL) {
      const batch = fresh.slice(i, i + PARALLEL);
      batch.forEach((task) => tried.add(task.id));
      const outcomes = await Promise.allSettled(batch.map((task) => api.post(`tasks/${task.id}/retry`)));
      for (const outcome of outcomes) {
        if (outcome.status === "fulfilled") retried += 1;
        else if (refusedKey(outcome.reason)) throw outcome.reason;
        else skip += 1; // still failed, where it was
      }
      show(`Retrying failed ${type}: ${tried.size} of ${Math.max(total, tried.size)}`);
    }
  }
}
