// View state in the URL hash, and TensorBoard's host page (the plugin runs in its iframe).
//
// The state lives in the plugin's own URL hash (#run=...&epoch=3...). Inside TensorBoard it is also
// mirrored into the top-level URL as `p.lrp.<key>=<value>` entries, the keys TensorBoard hands to
// plugins (experimental.GetURLPluginData), so copying the browser's address shares the view.

const PLUGIN = "lrp";
const PREFIX = `p.${PLUGIN}.`;

export const KEYS = [
  "run", "epoch", "cat", "emb", "ex", "ey", "clu", "color", "cmap", "view", "px", "size",
  "psize", "page", "wrong", "sel", "selc", "sample",
];

function hostWindow() {
  try {
    if (window.parent !== window && window.parent.location.origin === window.location.origin) return window.parent;
  } catch (error) {
    // Another origin: no access to the host's URL; the plugin keeps its own hash only.
  }
  return null;
}

function parseOwnHash() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const state = {};
  for (const key of KEYS) if (params.has(key)) state[key] = params.get(key);
  return state;
}

/** tf_storage's hash format: `tab&key=value&...`, keys and values URI-encoded. */
function parseHostHash(hash) {
  const entries = [];
  let tab = null;
  for (const item of hash.replace(/^#/, "").split("&")) {
    if (!item) continue;
    const parts = item.split("=");
    if (parts.length === 1) tab = parts[0];
    else if (parts.length === 2) {
      try {
        entries.push([decodeURIComponent(parts[0]), decodeURIComponent(parts[1])]);
      } catch (error) {
        // A malformed entry is dropped, as TensorBoard drops it.
      }
    }
  }
  return { tab, entries };
}

function formatHostHash(tab, entries) {
  const items = entries.map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`);
  return (tab || "") + (items.length ? "&" + items.join("&") : "");
}

/** The state to start with: the plugin's own hash, else the host's `p.lrp.*` entries. */
export function initialState() {
  const own = parseOwnHash();
  if (Object.keys(own).length) return own;
  const host = hostWindow();
  if (!host) return {};
  const state = {};
  for (const [key, value] of parseHostHash(host.location.hash).entries) {
    if (key.startsWith(PREFIX) && KEYS.includes(key.slice(PREFIX.length))) state[key.slice(PREFIX.length)] = value;
  }
  return state;
}

function clean(state) {
  const result = [];
  for (const key of KEYS) {
    const value = state[key];
    if (value === null || value === undefined || value === "") continue;
    result.push([key, String(value)]);
  }
  return result;
}

/** Write the state into the URL(s) without adding history entries. */
export function writeState(state) {
  const entries = clean(state);
  const own = "#" + new URLSearchParams(entries).toString();
  if (window.location.hash !== own) {
    // An absolute URL: a relative "#..." would resolve against <base href="plugin/lrp/"> in TensorBoard's iframe.
    const target = new URL(window.location.href);
    target.hash = own;
    window.history.replaceState(window.history.state, "", target.toString());
  }
  const host = hostWindow();
  if (!host) return;
  const { tab, entries: hostEntries } = parseHostHash(host.location.hash);
  const kept = hostEntries.filter(([key]) => !key.startsWith(PREFIX));
  const hash = formatHostHash(tab || PLUGIN, [...kept, ...entries.map(([key, value]) => [PREFIX + key, value])]);
  if (host.location.hash.replace(/^#/, "") !== hash) {
    const target = new URL(host.location.href);
    target.hash = hash;
    host.history.replaceState(host.history.state, "", target.toString());
  }
}

/** A link that opens this view: the host's address inside TensorBoard, else the plugin's own. */
export function shareLink() {
  const host = hostWindow();
  return host ? host.location.href : window.location.href;
}

/**
 * Connect to TensorBoard's plugin host (experimental IPC over a MessagePort) to hear its reload
 * button and auto-reload ("experimental.DataReloaded"). Does nothing outside TensorBoard.
 */
export function listenToHost(onReload) {
  if (!hostWindow()) return;
  const channel = new MessageChannel();
  channel.port1.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (message.isReply) return;
    if (message.type === "experimental.DataReloaded") onReload();
    channel.port1.postMessage(JSON.stringify({ type: message.type, id: message.id, payload: null, error: null, isReply: true }));
  };
  window.parent.postMessage("experimental.bootstrap", window.location.origin, [channel.port2]);
}

// Sample-id lists in the hash: sorted, runs of consecutive ids as `a-b`, comma-separated.
export function encodeIds(ids) {
  const sorted = [...ids].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j += 1;
    parts.push(j > i ? `${sorted[i]}-${sorted[j]}` : `${sorted[i]}`);
    i = j + 1;
  }
  return parts.join(",");
}

export function decodeIds(text, limit = 200000) {
  const ids = [];
  for (const part of (text || "").split(",")) {
    const match = /^(-?\d+)(?:-(-?\d+))?$/.exec(part.trim());
    if (!match) continue;
    const start = Number(match[1]);
    const end = match[2] === undefined ? start : Number(match[2]);
    for (let id = start; id <= end && ids.length < limit; id += 1) ids.push(id);
  }
  return ids;
}
