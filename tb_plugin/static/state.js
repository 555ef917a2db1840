// The tab's shared state in the URL hash, and TensorBoard's host page (the plugin runs in its iframe).
//
// The state lives in the plugin's own URL hash (#run=...&epoch=3...). Inside TensorBoard it is also
// mirrored into the top-level URL as `p.lrp.<key>=<value>` entries, the keys TensorBoard hands to
// plugins (experimental.GetURLPluginData), so copying the browser's address shares the view.
//
// Which keys exist is not listed here: the shell (app.js) and each view module declare the keys they
// own as params, {key: {read, write}}; readState and writeState take the union of them.

const PLUGIN = "lrp";
const PREFIX = `p.${PLUGIN}.`;

/** An integer written exactly as `text` (no "1.5", no "1e3"), else `fallback`. */
export function integer(text, fallback) {
  const value = Number.parseInt(text, 10);
  return Number.isFinite(value) && String(value) === String(text).trim() ? value : fallback;
}

/** `value` when it is one of `options` (values or {value} objects), else `fallback`. */
export function pick(value, options, fallback) {
  return options.some((option) => String(option.value ?? option) === String(value)) ? value : fallback;
}

/**
 * Param specs: how one URL-hash key is read into the state and written back.
 * `read(text)` gets the hash's text, or undefined when the key is absent (also the value a
 * per-run param is reset to when another run opens); `write(value, state)` returns the text to
 * write, null or "" to leave the key out. `perRun: true` resets the param when another run opens.
 */
export const param = {
  /** Text as given; `fallback` when absent. */
  text: (fallback = null) => ({ read: (text) => text ?? fallback, write: (value) => value }),
  /** An integer; `fallback` when absent, malformed or not one of `options`; left out when it is `fallback`. */
  integer: (fallback, options = null) => ({
    read: (text) => {
      const value = integer(text ?? "", fallback);
      return options && !options.includes(value) ? fallback : value;
    },
    write: (value) => (value === fallback ? null : value),
  }),
  /** On or off, written "1" / "0" only when it differs from `fallback`. */
  flag: (fallback) => ({
    read: (text) => (text === undefined ? fallback : fallback ? text !== "0" : text === "1"),
    write: (value) => (value === fallback ? null : value ? "1" : "0"),
  }),
  /** One of `options` ([{value, label}]), else `fallback`. */
  choice: (options, fallback) => ({ read: (text) => pick(text, options, fallback), write: (value) => value }),
  /** A set of sample ids (or cluster numbers), written as ranges: `1-4,9`. */
  ids: () => ({ read: (text) => new Set(decodeIds(text)), write: (value) => encodeIds(value) }),
};

function hostWindow() {
  try {
    if (window.parent !== window && window.parent.location.origin === window.location.origin) return window.parent;
  } catch (error) {
    // Another origin: no access to the host's URL; the plugin keeps its own hash only.
  }
  return null;
}

function parseOwnHash(keys) {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const state = {};
  for (const key of keys) if (params.has(key)) state[key] = params.get(key);
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

/** The host's `p.lrp.*` entries of `keys` (empty outside TensorBoard). */
function hostTexts(keys) {
  const host = hostWindow();
  if (!host) return {};
  const state = {};
  for (const [key, value] of parseHostHash(host.location.hash).entries) {
    if (key.startsWith(PREFIX) && keys.includes(key.slice(PREFIX.length))) state[key.slice(PREFIX.length)] = value;
  }
  return state;
}

/** The hash's texts of `keys` to start with: the plugin's own hash, else the host's `p.lrp.*` entries. */
function initialTexts(keys) {
  const own = parseOwnHash(keys);
  return Object.keys(own).length ? own : hostTexts(keys);
}

function readTexts(params, texts) {
  const state = {};
  for (const [key, spec] of Object.entries(params)) state[key] = spec.read(texts[key]);
  return state;
}

/** The state to start with, from the URL: each param's `read` of its key's text. */
export function readState(params) {
  return readTexts(params, initialTexts(Object.keys(params)));
}

/** The state a changed URL holds: the plugin's own hash, or the host's entries when `fromHost`. */
export function readChangedState(params, fromHost) {
  const keys = Object.keys(params);
  return readTexts(params, fromHost ? hostTexts(keys) : parseOwnHash(keys));
}

/** The URL texts of a state (what writeState writes), to compare two states. */
export function stateTexts(params, state) {
  return JSON.stringify(clean(params, state));
}

/**
 * Call `onChange(fromHost)` when a link is pasted into an open tab: the plugin's own hash changed, or
 * (inside TensorBoard) the host page's. writeState changes the URL with replaceState, which fires no
 * hashchange, so only changes from outside arrive here.
 */
export function listenToHashChanges(onChange) {
  window.addEventListener("hashchange", () => onChange(false));
  const host = hostWindow();
  if (host) host.addEventListener("hashchange", () => onChange(true));
}

/** Reset the per-run params (`perRun: true`) to their value when absent from the URL. */
export function resetPerRun(params, state) {
  for (const [key, spec] of Object.entries(params)) if (spec.perRun) state[key] = spec.read(undefined);
}

function clean(params, state) {
  const result = [];
  for (const [key, spec] of Object.entries(params)) {
    const value = spec.write(state[key], state);
    if (value === null || value === undefined || value === "") continue;
    result.push([key, String(value)]);
  }
  return result;
}

/** Write the state into the URL(s), in the params' order, without adding history entries. */
export function writeState(params, state) {
  const entries = clean(params, state);
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
