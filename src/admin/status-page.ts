// The status page at the admin server's `/`: one HTML document rendered on
// the server from the same report as /status.json (readable with JavaScript
// off), one script and one stylesheet from the same origin that keep it live.
// No framework, no external asset. Every value reaches the page as text:
// escaped here, and set with textContent by the script, never as HTML.

import type { ConnectionView, LegView } from "./connections.js";
import type { ClosedSessionView, ListenerStatus, UpstreamStatus } from "./status.js";

/** /status.json as the page reads it. */
export interface StatusPageReport {
  readonly generatedAt: string;
  readonly draining: boolean;
  readonly listeners: ListenerStatus[];
  readonly closed: ClosedSessionView[];
  readonly sessions: {
    readonly total: number;
    readonly returned: number;
    readonly truncated: boolean;
    readonly connections: (ConnectionView & { readonly worker?: number; readonly tls?: { readonly protocol?: string; readonly peerSubject?: string } })[];
  };
}

/**
 * Headers of the page and its assets: nothing but this origin may load or
 * run (no inline script, no inline style), no MIME sniffing, no framing.
 */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
};

const ESCAPES: Readonly<Record<string, string>> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escapes text for an HTML text node or a quoted attribute. */
export function escapeHtml(value: unknown): string {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

/** 1h 2m, 3m 4s, 5.2s, 120ms. */
export function formatAge(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${ms}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** 45µs, 1.2ms, 180ms. */
export function formatRtt(us: number): string {
  if (us < 1000) return `${us}µs`;
  return us < 100_000 ? `${(us / 1000).toFixed(1)}ms` : `${Math.round(us / 1000)}ms`;
}

/** 512 B, 1.5 KiB, 3.2 MiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

const td = (value: unknown, cls?: string): string => `<td${cls ? ` class="${escapeHtml(cls)}"` : ""}>${escapeHtml(value)}</td>`;

function upstreamText(u: UpstreamStatus): string {
  if (u.state === "cooldown") return `${u.address} cool-down until ${u.cooldownUntil ?? "?"}`;
  if (u.state === "failing") return `${u.address} failing (${u.consecutiveFailures} in a row)`;
  return `${u.address} ok`;
}

function countsText(counts: Readonly<Record<string, number>>): string {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? "–" : entries.map(([reason, n]) => `${reason} ${n}`).join(", ");
}

function listenerRow(l: ListenerStatus): string {
  const upstreams = l.upstreams.map((u) => `<li class="up-${escapeHtml(u.state)}">${escapeHtml(upstreamText(u))}</li>`).join("");
  return `<tr>${td(l.name)}${td(l.address ?? "not bound")}${td(l.workers, "num")}<td><ul class="upstreams">${upstreams}</ul></td>${td(l.active, "num")}${td(l.accepted, "num")}${td(countsText(l.closes.total))}${td(countsText(l.closes.last5m))}</tr>`;
}

function legCells(leg: LegView | null): string {
  const i = leg?.tcpInfo ?? null;
  if (i === null) return `<td class="leg" colspan="7">–</td>`;
  const probes = leg?.options?.keepaliveCount === undefined ? `${i.keepaliveProbesSent}` : `${i.keepaliveProbesSent}/${leg.options.keepaliveCount}`;
  return (
    td(i.state, "leg") +
    td(formatRtt(i.rttUs), "num") +
    td(i.unackedSegments, "num") +
    td(i.totalRetransmits, "num") +
    td(probes, i.keepaliveProbesSent > 0 ? "num probes" : "num") +
    td(formatAge(i.lastDataSentMs), "num") +
    td(formatAge(i.lastDataReceivedMs), "num")
  );
}

function probing(c: ConnectionView): boolean {
  return (c.legs?.client?.tcpInfo?.keepaliveProbesSent ?? 0) > 0 || (c.legs?.upstream?.tcpInfo?.keepaliveProbesSent ?? 0) > 0;
}

function sessionRow(c: StatusPageReport["sessions"]["connections"][number]): string {
  const tls = c.tls === undefined ? "–" : [c.tls.protocol, c.tls.peerSubject].filter(Boolean).join(" ");
  return `<tr data-session-id="${escapeHtml(c.id)}"${probing(c) ? ' class="probing"' : ""}>${td(c.id)}${td(c.worker ?? "–", "num")}${td(c.listener)}${td(formatAge(c.ageMs), "num")}${td(c.client)}${td(c.upstream ?? "connecting")}${td(formatBytes(c.bytesFromClient), "num")}${td(formatBytes(c.bytesFromUpstream), "num")}${legCells(c.legs.client)}${legCells(c.legs.upstream)}${td(tls)}</tr>`;
}

function closedRow(c: ClosedSessionView): string {
  return `<tr data-closed-id="${escapeHtml(c.id)}">${td(c.closedAt)}${td(c.id)}${td(c.worker ?? "–", "num")}${td(c.listener)}${td(c.client)}${td(c.upstream ?? "–")}${td(c.reason, `reason r-${c.side}`)}${td(c.side)}${td(c.errno ?? "–")}${td(formatAge(c.durationMs), "num")}${td(formatBytes(c.bytesFromClient), "num")}${td(formatBytes(c.bytesFromUpstream), "num")}</tr>`;
}

const LEG_HEADS = ["state", "rtt", "unacked", "retrans", "probes", "last sent", "last recv"];

/** The sortable columns of the sessions table: data-sort keys the script knows. */
const SESSION_HEADS: readonly (readonly [string, string | undefined])[] = [
  ["id", "id"],
  ["worker", "worker"],
  ["listener", "listener"],
  ["age", "age"],
  ["client", "client"],
  ["upstream", "upstream"],
  ["from client", "bytesFromClient"],
  ["from upstream", "bytesFromUpstream"],
];

function sessionHead(): string {
  const main = SESSION_HEADS.map(([label, key]) => `<th rowspan="2"${key ? ` data-sort="${key}"` : ""}>${label}</th>`).join("");
  const legs = LEG_HEADS.map((h) => `<th>${h}</th>`).join("");
  return `<thead><tr>${main}<th colspan="7" data-sort="clientProbes">client leg</th><th colspan="7" data-sort="upstreamProbes">upstream leg</th><th rowspan="2">TLS</th></tr><tr>${legs}${legs}</tr></thead>`;
}

const CLOSED_HEAD = ["closed at", "id", "worker", "listener", "client", "upstream", "reason", "side", "errno", "duration", "from client", "from upstream"];

/**
 * The whole page. With a report, its tables are filled (the no-JavaScript
 * snapshot); without one (the answer to a request without the token), they
 * are empty and the token form shows.
 */
export function renderStatusPage(report: StatusPageReport | undefined): string {
  const listenerNames = report?.listeners.map((l) => l.name) ?? [];
  const options = listenerNames.map((n) => `<option value="${escapeHtml(n)}">${escapeHtml(n)}</option>`).join("");
  const summary =
    report === undefined
      ? "Waiting for the admin token."
      : `${report.sessions.total} live session(s)${report.sessions.truncated ? `, ${report.sessions.returned} shown` : ""}; generated ${report.generatedAt}${report.draining ? "; draining" : ""}.`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>keepalive-proxy status</title><link rel="stylesheet" href="/status.css"><script src="/status.js" defer></script></head>
<body>
<header><h1>keepalive-proxy</h1><p id="summary" role="status">${escapeHtml(summary)}</p><p id="live" class="live">snapshot: JavaScript keeps this page live every 2 s</p></header>
<form id="login"${report === undefined ? "" : " hidden"}><label>Admin token <input id="token" type="password" autocomplete="off" required></label> <button type="submit">Show status</button><span id="login-error" class="error"></span>
<noscript><p>This endpoint needs <code>Authorization: Bearer &lt;token&gt;</code>; without JavaScript, read /status.json with curl.</p></noscript></form>
<section><h2>Listeners</h2><table id="listeners"><thead><tr><th>name</th><th>address</th><th>workers</th><th>upstreams</th><th>active</th><th>accepted</th><th>closes (total)</th><th>closes (last 5 min)</th></tr></thead>
<tbody>${report?.listeners.map(listenerRow).join("") ?? ""}</tbody></table></section>
<section><h2>Live sessions</h2>
<form id="filters" method="get" action="/"><label>listener <select id="filter-listener" name="listener"><option value="">all</option>${options}</select></label>
<label>address <input id="filter-address" type="search" placeholder="client or upstream contains"></label> <button id="filter-apply" type="submit">filter</button>
<span class="legend"><span class="probing">highlighted</span>: a leg has sent keepalive probes that are unanswered (the peer may be dead)</span></form>
<table id="sessions">${sessionHead()}<tbody>${report?.sessions.connections.map(sessionRow).join("") ?? ""}</tbody></table></section>
<section><h2>Recently closed <small>(the last 200)</small></h2><table id="closed"><thead><tr>${CLOSED_HEAD.map((h) => `<th>${h}</th>`).join("")}</tr></thead>
<tbody>${report?.closed.map(closedRow).join("") ?? ""}</tbody></table></section>
</body></html>
`;
}

/** The page answered 401: empty tables and the token form. */
export function renderLoginPage(): string {
  return renderStatusPage(undefined);
}

export const STATUS_CSS = `:root{font-family:system-ui,sans-serif;font-size:13px;color:#1b1f24;background:#fafafa}
body{margin:1rem 1.5rem}h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
header{display:flex;gap:1.5rem;align-items:baseline;flex-wrap:wrap}.live{color:#57606a}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border:1px solid #d0d7de;padding:1px 4px;text-align:left;white-space:nowrap}
th{background:#eef1f4;font-weight:600}th[data-sort]{cursor:pointer;text-decoration:underline dotted}th.sorted-asc::after{content:" ▲"}th.sorted-desc::after{content:" ▼"}
td.num{text-align:right;font-variant-numeric:tabular-nums}ul.upstreams{margin:0;padding-left:1rem}
.up-ok{color:#1a7f37}.up-failing{color:#9a6700}.up-cooldown{color:#cf222e;font-weight:600}
tr.probing td{background:#fff1c2}tr.probing td.probes{background:#ffb3b3;font-weight:700}span.probing{background:#fff1c2;padding:0 4px}
.reason.r-client,.reason.r-upstream{font-weight:600}.error{color:#cf222e;margin-left:1rem}
form{margin:.4rem 0}.legend{margin-left:1rem;color:#57606a}section{overflow-x:auto}
`;

export const STATUS_JS = String.raw`"use strict";
// The status page's script: reads /status.json every 2 s and redraws the
// tables. Every value is set with textContent, never as HTML.
(function () {
  var TOKEN_KEY = "keepalive-proxy.admin-token";
  var REFRESH_MS = 2000;
  var state = { report: null, sortKey: "age", sortDir: -1, listener: "", address: "" };
  var timer = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function age(ms) {
    if (ms === null || ms === undefined) return "\u2013";
    if (ms < 1000) return ms + "ms";
    var s = Math.floor(ms / 1000);
    if (s < 60) return (ms / 1000).toFixed(1) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function rtt(us) {
    if (us < 1000) return us + "\u00b5s";
    return us < 100000 ? (us / 1000).toFixed(1) + "ms" : Math.round(us / 1000) + "ms";
  }
  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
    return (n / 1073741824).toFixed(2) + " GiB";
  }
  function counts(c) {
    var entries = Object.keys(c).map(function (k) { return [k, c[k]]; });
    entries.sort(function (a, b) { return b[1] - a[1]; });
    return entries.length === 0 ? "\u2013" : entries.map(function (e) { return e[0] + " " + e[1]; }).join(", ");
  }
  function probesOf(leg) { return leg && leg.tcpInfo ? leg.tcpInfo.keepaliveProbesSent : 0; }
  function cell(tr, text, cls) { tr.appendChild(el("td", text, cls)); }
  function replaceBody(table, rows) {
    var old = table.tBodies[0];
    var body = document.createElement("tbody");
    rows.forEach(function (r) { body.appendChild(r); });
    table.replaceChild(body, old);
  }

  function listenerRow(l) {
    var tr = el("tr");
    cell(tr, l.name); cell(tr, l.address === null ? "not bound" : l.address); cell(tr, l.workers, "num");
    var td = el("td"); var ul = el("ul", null, "upstreams");
    l.upstreams.forEach(function (u) {
      var text = u.address + (u.state === "cooldown" ? " cool-down until " + u.cooldownUntil : u.state === "failing" ? " failing (" + u.consecutiveFailures + " in a row)" : " ok");
      ul.appendChild(el("li", text, "up-" + u.state));
    });
    td.appendChild(ul); tr.appendChild(td);
    cell(tr, l.active, "num"); cell(tr, l.accepted, "num"); cell(tr, counts(l.closes.total)); cell(tr, counts(l.closes.last5m));
    return tr;
  }
  function legCells(tr, leg) {
    var i = leg ? leg.tcpInfo : null;
    if (!i) { var td = el("td", "\u2013", "leg"); td.colSpan = 7; tr.appendChild(td); return; }
    var count = leg.options ? leg.options.keepaliveCount : undefined;
    cell(tr, i.state, "leg"); cell(tr, rtt(i.rttUs), "num"); cell(tr, i.unackedSegments, "num");
    cell(tr, i.totalRetransmits, "num");
    cell(tr, count === undefined ? i.keepaliveProbesSent : i.keepaliveProbesSent + "/" + count, i.keepaliveProbesSent > 0 ? "num probes" : "num");
    cell(tr, age(i.lastDataSentMs), "num"); cell(tr, age(i.lastDataReceivedMs), "num");
  }
  function sessionRow(c) {
    var tr = el("tr");
    tr.dataset.sessionId = c.id;
    if (probesOf(c.legs.client) > 0 || probesOf(c.legs.upstream) > 0) tr.className = "probing";
    cell(tr, c.id); cell(tr, c.worker === undefined ? "\u2013" : c.worker, "num"); cell(tr, c.listener); cell(tr, age(c.ageMs), "num");
    cell(tr, c.client); cell(tr, c.upstream === null ? "connecting" : c.upstream);
    cell(tr, bytes(c.bytesFromClient), "num"); cell(tr, bytes(c.bytesFromUpstream), "num");
    legCells(tr, c.legs.client); legCells(tr, c.legs.upstream);
    cell(tr, c.tls ? [c.tls.protocol, c.tls.peerSubject].filter(Boolean).join(" ") : "\u2013");
    return tr;
  }
  function closedRow(c) {
    var tr = el("tr");
    tr.dataset.closedId = c.id;
    cell(tr, c.closedAt); cell(tr, c.id); cell(tr, c.worker === undefined ? "\u2013" : c.worker, "num"); cell(tr, c.listener);
    cell(tr, c.client); cell(tr, c.upstream === null ? "\u2013" : c.upstream);
    cell(tr, c.reason, "reason r-" + c.side); cell(tr, c.side); cell(tr, c.errno === null ? "\u2013" : c.errno);
    cell(tr, age(c.durationMs), "num"); cell(tr, bytes(c.bytesFromClient), "num"); cell(tr, bytes(c.bytesFromUpstream), "num");
    return tr;
  }

  var SORT = {
    id: function (c) { return c.id; },
    worker: function (c) { return c.worker || 0; },
    listener: function (c) { return c.listener; },
    age: function (c) { return c.ageMs; },
    client: function (c) { return c.client; },
    upstream: function (c) { return c.upstream || ""; },
    bytesFromClient: function (c) { return c.bytesFromClient; },
    bytesFromUpstream: function (c) { return c.bytesFromUpstream; },
    clientProbes: function (c) { return probesOf(c.legs.client); },
    upstreamProbes: function (c) { return probesOf(c.legs.upstream); }
  };
  function visible(c) {
    if (state.listener && c.listener !== state.listener) return false;
    if (state.address && c.client.indexOf(state.address) === -1 && (c.upstream || "").indexOf(state.address) === -1) return false;
    return true;
  }
  function sorted(list) {
    var key = SORT[state.sortKey] || SORT.age;
    return list.slice().sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * state.sortDir;
    });
  }
  function renderSessions() {
    var r = state.report;
    if (!r) return;
    replaceBody($("sessions"), sorted(r.sessions.connections.filter(visible)).map(sessionRow));
    var heads = document.querySelectorAll("#sessions th[data-sort]");
    Array.prototype.forEach.call(heads, function (th) {
      th.classList.toggle("sorted-asc", th.dataset.sort === state.sortKey && state.sortDir > 0);
      th.classList.toggle("sorted-desc", th.dataset.sort === state.sortKey && state.sortDir < 0);
    });
  }
  function render(r) {
    state.report = r;
    var select = $("filter-listener");
    var names = r.listeners.map(function (l) { return l.name; });
    var have = Array.prototype.map.call(select.options, function (o) { return o.value; }).slice(1);
    if (have.join("\n") !== names.join("\n")) {
      while (select.options.length > 1) select.remove(1);
      names.forEach(function (n) { var o = el("option", n); o.value = n; select.appendChild(o); });
      select.value = names.indexOf(state.listener) === -1 ? "" : state.listener;
    }
    replaceBody($("listeners"), r.listeners.map(listenerRow));
    renderSessions();
    replaceBody($("closed"), r.closed.map(closedRow));
    $("summary").textContent = r.sessions.total + " live session(s)" + (r.sessions.truncated ? ", " + r.sessions.returned + " shown" : "") +
      "; updated " + new Date(r.generatedAt).toLocaleTimeString() + (r.draining ? "; draining" : "") + ".";
    $("live").textContent = "live: refreshed every 2 s";
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, REFRESH_MS); }
  function showLogin(message) {
    $("login").hidden = false;
    $("login-error").textContent = message;
    $("live").textContent = "waiting for the admin token";
  }
  function refresh() {
    var token = sessionStorage.getItem(TOKEN_KEY);
    var headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    fetch("/status.json", { headers: headers, cache: "no-store", credentials: "omit" }).then(function (res) {
      if (res.status === 401) {
        if (token) sessionStorage.removeItem(TOKEN_KEY);
        showLogin(token ? "That token was refused." : "");
        return;
      }
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json().then(function (r) {
        $("login").hidden = true;
        render(r);
        schedule();
      });
    }).catch(function (e) {
      $("live").textContent = "update failed (" + e.message + "); retrying";
      schedule();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("login").addEventListener("submit", function (e) {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      refresh();
    });
    $("filters").addEventListener("submit", function (e) { e.preventDefault(); });
    $("filter-apply").hidden = true;
    $("filter-listener").addEventListener("change", function (e) { state.listener = e.target.value; renderSessions(); });
    $("filter-address").addEventListener("input", function (e) { state.address = e.target.value.trim(); renderSessions(); });
    Array.prototype.forEach.call(document.querySelectorAll("#sessions th[data-sort]"), function (th) {
      th.addEventListener("click", function () {
        if (state.sortKey === th.dataset.sort) state.sortDir = -state.sortDir;
        else { state.sortKey = th.dataset.sort; state.sortDir = 1; }
        renderSessions();
      });
    });
    refresh();
  });
})();
`;
