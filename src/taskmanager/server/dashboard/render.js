// Building the page's elements. Everything shown goes in as text (textContent, attributes set one
// by one), never as HTML: task params, results, errors and type names are users' data.

const SVG = "http://www.w3.org/2000/svg";

// el("td", { class: "n" }, "text", otherElement): an element with attributes and children.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  node.append(...children.filter((child) => child !== null && child !== undefined).map(asNode));
  return node;
}

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttributes(node, attributes);
  node.append(...children.map(asNode));
  return node;
}

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function asNode(child) {
  return child instanceof Node ? child : document.createTextNode(String(child));
}

// 4000 → "1h06m"; null → "—".
export function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const whole = Math.max(0, Math.round(seconds));
  if (whole < 60) return `${whole}s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes}m${String(whole % 60).padStart(2, "0")}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h${String(minutes % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, "0")}h`;
}

export function seconds(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(2)} s`;
}

// "2026-01-01T12:00:04.000000Z" → "2026-01-01 12:00:04Z" (the server's own UTC time, as it wrote it).
export function time(value) {
  if (!value) return "—";
  return String(value).replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function json(value) {
  return value === null || value === undefined ? "—" : JSON.stringify(value, null, 2);
}

export function replaceRows(table, rows, emptyText, columns) {
  const body = table.tBodies[0];
  if (rows.length === 0) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText)));
  } else {
    body.replaceChildren(...rows);
  }
}

// Per-minute bars of the last hour: completed (stacked under) failed, newest on the right.
export function drawThroughput(chart, summary, throughput) {
  const width = 600;
  const height = 110;
  const top = 14;
  const peak = Math.max(1, ...throughput.map((m) => m.completed + m.failed));
  const slot = width / Math.max(throughput.length, 1);
  const scale = (count) => (count / peak) * (height - top);
  const bars = [];
  throughput.forEach((minute, index) => {
    const x = index * slot + 1;
    const barWidth = Math.max(slot - 2, 1);
    const done = scale(minute.completed);
    const failed = scale(minute.failed);
    const label = `${time(minute.minute)}: ${minute.completed} completed, ${minute.failed} failed`;
    if (minute.completed > 0) {
      bars.push(
        svg("rect", { class: "completed", x, y: height - done, width: barWidth, height: done }, svg("title", {}, label))
      );
    }
    if (minute.failed > 0) {
      const y = height - done - failed;
      bars.push(svg("rect", { class: "failed", x, y, width: barWidth, height: failed }, svg("title", {}, label)));
    }
  });
  chart.replaceChildren(
    svg("line", { class: "axis", x1: 0, y1: height, x2: width, y2: height }),
    svg("text", { class: "tick", x: 0, y: 10 }, `${peak} / min`),
    svg("text", { class: "tick", x: 0, y: height + 16 }, "60 min ago"),
    svg("text", { class: "tick end", x: width, y: height + 16 }, "now"),
    ...bars
  );
  const completed = throughput.reduce((sum, m) => sum + m.completed, 0);
  const failed = throughput.reduce((sum, m) => sum + m.failed, 0);
  summary.textContent = `${completed} completed, ${failed} failed in the last hour`;
}
