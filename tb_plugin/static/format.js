// Values as text: percentages, probe metadata values, CSV cells.

/** Prefix of a metadata column's name where it would clash with one of the tab's own names (`meta:<name>`). */
export const META_PREFIX = "meta:";

/** How an embedding method is named in the toolbar and the scatter's caption. */
export const EMBEDDING_NAMES = { tsne: "t-SNE", umap: "UMAP", pca: "PCA", spectral: "spectral" };

export function embeddingName(method) {
  return EMBEDDING_NAMES[method] || method;
}

export function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

/** A metadata value as text: null (NaN or missing) as a dash. */
export function metaText(value) {
  if (value === null || value === undefined) return "–";
  // a measured number reads better with 4 significant digits; integers and text as they are
  if (typeof value === "number" && !Number.isInteger(value)) return String(Number(value.toPrecision(4)));
  return String(value);
}

/** A value as a CSV cell: empty for null, text otherwise, quoted when it holds a comma, quote or line break. */
export function csvCell(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
