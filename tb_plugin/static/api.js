// Talking to the plugin's backend: JSON, binary columns and image URLs.
// The module's own URL is the plugin's route prefix (/data/plugin/lrp/), in TensorBoard and standalone.

const BASE = new URL(".", import.meta.url);

const TYPED = {
  int8: Int8Array, int16: Int16Array, int32: Int32Array, uint8: Uint8Array,
  float32: Float32Array, float64: Float64Array,
};

export class RequestError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The attribution method and named analysis the tab shows (null: the run's first method, the default
// analysis); every request about a run carries them unless it names its own (the methods grid does).
export const selection = { method: null, analysis: null };

export function url(route, params = {}) {
  const target = new URL(route, BASE);
  if ("run" in params) params = { method: selection.method, analysis: selection.analysis, ...params };
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) target.searchParams.set(key, String(value));
  }
  return target.toString();
}

async function request(route, params, signal) {
  // Data before pictures: a switch of epoch must not wait behind the previous epoch's images.
  const response = await fetch(url(route, params), { signal, credentials: "same-origin", priority: "high" });
  if (!response.ok) {
    const text = await response.text().catch(() => "");
    throw new RequestError(response.status, text || `${route}: HTTP ${response.status}`);
  }
  return response;
}

export async function getJSON(route, params = {}, signal = undefined) {
  return (await request(route, params, signal)).json();
}

/**
 * Fetch binary columns ("LRPB": magic, uint32 header length, JSON header, 8-byte aligned columns).
 * @returns {Promise<{count: number, columns: Object<string, TypedArray>, meta: Object, bytes: number}>}
 */
export async function getColumns(route, params = {}, signal = undefined) {
  const buffer = await (await request(route, params, signal)).arrayBuffer();
  return decodeColumns(buffer);
}

export function decodeColumns(buffer) {
  const view = new DataView(buffer);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 4));
  if (magic !== "LRPB") throw new Error("the server sent no LRPB payload");
  const length = view.getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, length)));
  const start = 8 + length;
  const columns = {};
  for (const spec of header.columns) {
    const Type = TYPED[spec.dtype];
    if (!Type) throw new Error(`unknown column type ${spec.dtype}`);
    columns[spec.name] = new Type(buffer, start + spec.offset, header.count);
  }
  return { count: header.count, columns, meta: header.meta || {}, bytes: buffer.byteLength };
}
