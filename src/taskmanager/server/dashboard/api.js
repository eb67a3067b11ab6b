// The API as the dashboard calls it: JSON envelopes, the key in the X-API-Key header (never in a
// URL, which would land in access logs), and /events read through fetch() because EventSource
// cannot send headers.

const KEY_STORAGE = "taskmanager.dashboard.key";
// The page's files are under <root>/dashboard/, the API under <root>/api/.
const API_ROOT = new URL("../api/", import.meta.url);

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor() {
    this.key = sessionStorage.getItem(KEY_STORAGE);
  }

  remember(key) {
    this.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
  }

  forget() {
    this.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
  }

  headers(extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    if (this.key) headers["X-API-Key"] = this.key;
    return headers;
  }

  url(path, query = {}) {
    const url = new URL(path, API_ROOT);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
    }
    return url;
  }

  async call(method, path, { query, body, key } = {}) {
    const headers = this.headers(body === undefined ? {} : { "Content-Type": "application/json" });
    if (key !== undefined) headers["X-API-Key"] = key;
    const response = await fetch(this.url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    if (!response.ok || !payload || payload.success !== true) {
      const message = (payload && (payload.error || payload.message)) || `HTTP ${response.status}`;
      throw new ApiError(response.status, message, payload && payload.code);
    }
    return payload.data;
  }

  get(path, query) {
    return this.call("GET", path, { query });
  }

  post(path, body = {}) {
    return this.call("POST", path, { body });
  }

  delete(path) {
    return this.call("DELETE", path);
  }
}

// Follows GET /events: calls onEvent(name, data) for each task event, onState("live" | "offline")
// when the stream opens or drops, and reconnects with Last-Event-ID (so no event is missed while
// the history holds it), waiting longer after each failure. stop() ends it.
export function followEvents(api, { onEvent, onState, onUnauthorized }) {
  let lastId = null;
  let stopped = false;
  let controller = null;
  let delay = 1000;

  async function readOnce() {
    controller = new AbortController();
    const headers = api.headers({ Accept: "text/event-stream" });
    if (lastId !== null) headers["Last-Event-ID"] = lastId;
    const response = await fetch(api.url("events"), {
      headers,
      signal: controller.signal,
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 401) {
      onUnauthorized();
      stopped = true;
      return;
    }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    onState("live");
    delay = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  function dispatch(block) {
    let name = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    if (id !== null) lastId = id;
    if (data.length === 0) return;
    let parsed = null;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    if (name === "dropped" && parsed.last_event_id !== undefined) lastId = String(parsed.last_event_id);
    onEvent(name, parsed);
  }

  async function loop() {
    while (!stopped) {
      try {
        await readOnce();
      } catch {
        // a network error or an abort: reconnect below unless stopped
      }
      if (stopped) break;
      onState("offline");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }

  loop();
  return {
    stop() {
      stopped = true;
      if (controller) controller.abort();
      onState("offline");
    },
  };
}
