// The dashboard (API.md E): the queue per type, the last hour's throughput, the workers, the
// schedules, a paged task list and one task's detail with its actions, kept current by GET /events.

import { Api, ApiError, followEvents } from "./api.js";
import { age, drawThroughput, el, json, replaceRows, seconds, time } from "./render.js";
import { retryAllFailed } from "./retry.js";

const PAGE_SIZE = 25;
const STATUSES = ["pending", "claimed", "completed", "failed", "cancelled"];
// Events refresh the page at most this often, however many arrive.
const REFRESH_MS = 1000;

const api = new Api();
const $ = (id) => document.getElementById(id);
// The list's filters and page, the task open in the detail, the types known, those being retried.
const state = { status: "", type: "", offset: 0, total: 0, openId: null, types: [], retrying: new Set() };
let events = null;
let refreshTimer = null;
let lastRefresh = 0;
// Each view's newest request: an older answer arriving after a newer one is dropped.
const asked = { stats: 0, workers: 0, schedules: 0, tasks: 0, detail: 0 };

// latest(view, path, query): the answer, or null if a newer request of the view went out meanwhile.
async function latest(view, path, query) {
  const mine = ++asked[view];
  const answer = await api.get(path, query);
  return mine === asked[view] ? answer : null;
}

// -- signing in --------------------------------------------------------------------------------

async function start() {
  try {
    await api.get("stats"); // answers without a key in open mode, or with the key kept this session
    show();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      const kept = api.key !== null; // a key of this session, refused now: say why
      api.forget();
      askForKey(kept ? `The key was refused: ${error.message}` : "");
    } else {
      notice(`The server did not answer: ${error.message}`);
    }
  }
}

function askForKey(message = "") {
  $("main").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  $("api-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  try {
    await api.call("GET", "stats", { key });
  } catch (error) {
    const refused = error instanceof ApiError && (error.status === 401 || error.status === 403);
    $("sign-in-error").textContent = refused
      ? `That key was refused: ${error.message}`
      : `The server did not answer: ${error.message}`;
    return;
  }
  $("api-key").value = "";
  api.remember(key);
  show();
}

function signOut() {
  if (events) events.stop();
  events = null;
  api.forget();
  askForKey();
}

function show() {
  $("sign-in").hidden = true;
  $("main").hidden = false;
  $("sign-out").hidden = !api.key;
  notice("");
  refreshAll();
  if (!events) {
    events = followEvents(api, {
      onEvent,
      onState: (live) => {
        $("live").textContent = live;
        $("live").dataset.state = live;
      },
      onUnauthorized: () => {
        events = null; // the stream has stopped: signing in again starts another
        api.forget();
        askForKey("The key was refused; sign in again.");
      },
    });
  }
}

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

// Any failure of a call: a 401 asks for a key again, anything else is shown.
function failed(error) {
  if (error instanceof ApiError && error.status === 401) {
    signOut();
    $("sign-in-error").textContent = "The key was refused; sign in again.";
  } else {
    notice(error.message);
  }
}

// -- refreshing --------------------------------------------------------------------------------

function refreshAll() {
  lastRefresh = Date.now();
  return Promise.all([refreshStats(), refreshWorkers(), refreshSchedules(), refreshTasks(), refreshDetail()])
    .then(() => notice("")) // all answered: an older failure's notice is stale
    .catch(failed);
}

function onEvent(name, data) {
  if (name === "dropped") notice("The live stream fell behind; reconnecting.");
  if (refreshTimer !== null) return;
  const wait = Math.max(0, lastRefresh + REFRESH_MS - Date.now());
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshAll();
  }, wait);
}

async function refreshStats() {
  const stats = await latest("stats", "stats");
  if (!stats) return;
  const by = stats.by_status;
  $("totals").textContent =
    STATUSES.map((status) => `${by[status] ?? 0} ${status}`).join(" · ") +
    ` · ${stats.workers_active} workers active`;
  state.types = stats.by_type.map((row) => row.type);
  const rows = stats.by_type.map((row) =>
    el(
      "tr",
      { "data-type": row.type },
      el("th", { scope: "row" }, el("button", { type: "button", class: "link", onclick: () => chooseType(row.type) }, row.type)),
      ...STATUSES.map((status) => el("td", { class: `n ${status}`, "data-status": status }, row[status])),
      el("td", { class: "n" }, age(row.oldest_pending_seconds)),
      el("td", { class: "n" }, `${row.completed_last_hour} ✓ ${row.failed_last_hour} ✗`),
      el(
        "td",
        {},
        el(
          "button",
          { type: "button", disabled: row.failed === 0 || state.retrying.has(row.type), onclick: (e) => retryFailedOf(row.type, e.currentTarget) },
          "Retry all failed"
        )
      )
    )
  );
  replaceRows($("types"), rows, "No task types registered yet.", 9);
  drawThroughput($("throughput"), $("throughput-summary"), stats.throughput);
  fillTypeFilter();
}

function fillTypeFilter() {
  const select = $("filter-type");
  const names = [...new Set([...state.types, state.type].filter(Boolean))].sort();
  const current = [...select.options].slice(1).map((option) => option.value);
  if (current.join("\n") !== names.join("\n")) {
    select.replaceChildren(el("option", { value: "" }, "any"), ...names.map((name) => el("option", { value: name }, name)));
  }
  select.value = state.type;
}

async function refreshWorkers() {
  const found = await latest("workers", "workers");
  if (!found) return;
  const rows = found.workers.map((worker) =>
    el(
      "tr",
      {},
      el("th", { scope: "row" }, worker.worker_id),
      el("td", { class: "n" }, worker.claimed),
      el("td", { class: "n" }, worker.completed),
      el("td", { class: "n" }, worker.failed),
      el("td", { class: "n" }, seconds(worker.avg_processing_seconds)),
      el("td", {}, time(worker.last_seen_at))
    )
  );
  replaceRows($("workers"), rows, "No worker seen in the last 24 hours.", 6);
}

// A schedule's cadence: its cron line (and time zone), or its interval.
function cadence(schedule) {
  if (schedule.cron) return `${schedule.cron} (${schedule.timezone})`;
  return `every ${schedule.interval_seconds} s`;
}

async function refreshSchedules() {
  let found;
  try {
    found = await latest("schedules", "schedules");
  } catch (error) {
    // A key without types:read, or a server without schedules (PrismQ's): say so, in place.
    if (error instanceof ApiError && (error.status === 403 || error.status === 404)) {
      const why = error.status === 403 ? "This key may not read schedules." : "This server has no schedules.";
      replaceRows($("schedules"), [], why, 5);
      return;
    }
    throw error;
  }
  if (!found) return;
  const rows = found.schedules.map((schedule) =>
    el(
      "tr",
      { "data-schedule": schedule.name, class: schedule.enabled ? "" : "disabled" },
      el("th", { scope: "row" }, schedule.name),
      el("td", {}, schedule.type),
      el("td", {}, cadence(schedule)),
      el("td", {}, schedule.enabled ? time(schedule.next_run_at) : "disabled"),
      el("td", {}, time(schedule.last_run_at))
    )
  );
  replaceRows($("schedules"), rows, "No schedule.", 5);
}

async function refreshTasks() {
  const query = { status: state.status, type: state.type, limit: PAGE_SIZE, offset: state.offset };
  const page = await latest("tasks", "tasks", query);
  if (!page) return;
  if (page.tasks.length === 0 && state.offset > 0 && page.total > 0) {
    state.offset = Math.max(0, Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE);
    return refreshTasks(); // the page emptied under us (deletes, retries): show the last one
  }
  state.total = page.total;
  const rows = page.tasks.map((task) =>
    el(
      "tr",
      { "data-task-id": task.id, class: task.id === state.openId ? "open" : null },
      el("td", {}, el("button", { type: "button", class: "link", onclick: () => openTask(task.id) }, `#${task.id}`)),
      el("td", {}, task.type),
      el("td", {}, el("span", { class: `status ${task.status}` }, task.status)),
      el("td", { class: "n" }, `${task.attempts}/${task.max_attempts}`),
      el("td", {}, task.claimed_by ?? "—"),
      el("td", {}, time(task.created_at)),
      el("td", {}, time(task.updated_at))
    )
  );
  replaceRows($("tasks"), rows, "No tasks match.", 7);
  $("page-info").textContent =
    page.total === 0 ? "none" : `${state.offset + 1}–${state.offset + page.tasks.length} of ${page.total}`;
  $("previous-page").disabled = state.offset === 0;
  $("next-page").disabled = state.offset + PAGE_SIZE >= page.total;
}

function chooseType(type) {
  state.type = type;
  state.offset = 0;
  fillTypeFilter();
  refreshTasks().catch(failed);
  $("tasks-title").scrollIntoView({ block: "start" });
}

function filtersChanged() {
  state.status = $("filter-status").value;
  state.type = $("filter-type").value;
  state.offset = 0;
  refreshTasks().catch(failed);
}

function turnPage(step) {
  state.offset = Math.max(0, state.offset + step * PAGE_SIZE);
  refreshTasks().catch(failed);
}

// -- one task ----------------------------------------------------------------------------------

function openTask(id) {
  state.openId = id;
  $("detail-message").textContent = "";
  for (const row of $("tasks").tBodies[0].rows) row.classList.toggle("open", row.dataset.taskId === String(id));
  refreshDetail()
    .then(() => $("detail").scrollIntoView({ block: "start" }))
    .catch(failed);
}

async function refreshDetail() {
  const id = state.openId;
  if (id === null) return;
  let task;
  let history;
  const mine = ++asked.detail;
  try {
    [task, history] = await Promise.all([api.get(`tasks/${id}`), api.get(`tasks/${id}/history`)]);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    if (mine === asked.detail) closeDetail(); // deleted
    return;
  }
  if (mine !== asked.detail) return; // asked again meanwhile (another task, or newer news)
  $("detail").hidden = false;
  $("detail").dataset.status = task.status;
  $("detail-id").textContent = `#${task.id}`;
  const fields = [
    ["Type", task.type],
    ["Status", task.status],
    ["Attempts", `${task.attempts}/${task.max_attempts}`],
    ["Priority", task.priority],
    ["Progress", task.progress ?? "—"],
    ["Claimed by", task.claimed_by ?? "—"],
    ["Created", time(task.created_at)],
    ["Updated", time(task.updated_at)],
    ["Run after", time(task.run_after)],
    ["Completed", time(task.completed_at)],
  ];
  $("detail-fields").replaceChildren(...fields.flatMap(([name, value]) => [el("dt", {}, name), el("dd", { "data-field": name }, value)]));
  $("detail-params").textContent = json(task.params);
  $("detail-result").textContent = json(task.result);
  $("detail-error").textContent = task.error_message ?? "—";
  const rows = history.events.map((event) =>
    el(
      "tr",
      {},
      el("td", {}, time(event.created_at)),
      el("td", {}, event.event),
      el("td", {}, event.worker_id ?? "—"),
      el("td", {}, event.message ?? "")
    )
  );
  replaceRows($("detail-history"), rows, "No history kept.", 4);
  $("action-retry").disabled = !["failed", "cancelled"].includes(task.status);
  $("action-cancel").disabled = !["pending", "claimed"].includes(task.status);
}

function closeDetail() {
  state.openId = null;
  $("detail").hidden = true;
  for (const row of $("tasks").tBodies[0].rows) row.classList.remove("open");
}

async function act(verb, perform) {
  const id = state.openId;
  if (id === null) return;
  try {
    await perform(id);
    $("detail-message").textContent = `Task #${id} ${verb}.`;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return failed(error);
    $("detail-message").textContent = `Task #${id} was not ${verb}: ${error.message}`;
  }
  await refreshAll();
}

function deleteTask() {
  const id = state.openId;
  if (id === null || !window.confirm(`Delete task #${id} and its history?`)) return;
  act("deleted", (taskId) => api.delete(`tasks/${taskId}`)).then(() => {
    if (state.openId === id) closeDetail();
  });
}

// -- retry all failed of a type ------------------------------------------------------------------

async function retryFailedOf(type, button) {
  const progress = $("bulk-progress");
  button.disabled = true; // and in the rows refreshes redraw meanwhile
  state.retrying.add(type);
  progress.textContent = `Retrying failed ${type}…`;
  try {
    const retried = await retryAllFailed(api, type, (text) => (progress.textContent = text));
    progress.textContent = `Retried ${retried} failed ${type} task${retried === 1 ? "" : "s"}.`;
  } catch (error) {
    progress.textContent = `Retry all failed ${type} stopped: ${error.message}`;
    if (error instanceof ApiError && error.status === 401) failed(error);
  } finally {
    state.retrying.delete(type);
  }
  await refreshAll();
}

// -- wiring ------------------------------------------------------------------------------------

$("sign-in").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOut);
$("filter-status").addEventListener("change", filtersChanged);
$("filter-type").addEventListener("change", filtersChanged);
$("previous-page").addEventListener("click", () => turnPage(-1));
$("next-page").addEventListener("click", () => turnPage(1));
$("detail-close").addEventListener("click", closeDetail);
$("action-retry").addEventListener("click", () => act("retried", (id) => api.post(`tasks/${id}/retry`)));
$("action-cancel").addEventListener("click", () => act("cancelled", (id) => api.post(`tasks/${id}/cancel`)));
$("action-delete").addEventListener("click", deleteTask);
start();
