// Importing a selection or a finding's samples that someone exported (the gallery's Export CSV/JSON),
// so that people can share what they found: the file's sample ids become the selection.

/** The sample ids of an exported file's text: JSON ({samples: [{sample_id}]}, {sample_ids}, {member_ids},
 *  {findings: [{member_ids}]} or a list of ids) or CSV with a `sample_id` column. Throws naming the problem. */
export function parseIds(text, filename = "") {
  const trimmed = text.trim();
  if (!trimmed) throw new Error(`${filename || "the file"} is empty`);
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    let data;
    try {
      data = JSON.parse(trimmed);
    } catch (error) {
      throw new Error(`${filename || "the file"} is not valid JSON (${error.message})`);
    }
    const rows = Array.isArray(data) ? data
      : data.samples ? data.samples.map((row) => (typeof row === "object" && row !== null ? row.sample_id : row))
        : data.sample_ids || data.member_ids
          || (Array.isArray(data.findings) ? data.findings.flatMap((f) => f.member_ids || []) : null);
    if (!Array.isArray(rows)) {
      throw new Error(`${filename || "the file"} holds no sample ids: expected an export of this tab ({"samples": [{"sample_id": ...}]}) or a list of ids`);
    }
    return checked(rows, filename);
  }
  const lines = trimmed.split(/\r?\n/);
  const header = lines[0].split(",").map((cell) => cell.trim().replace(/^"|"$/g, ""));
  const column = header.indexOf("sample_id");
  if (column < 0) throw new Error(`${filename || "the file"} has no sample_id column; export a selection with Export CSV to see the layout`);
  return checked(lines.slice(1).filter((line) => line.trim()).map((line) => line.split(",")[column]), filename);
}

function checked(values, filename) {
  const ids = [];
  for (const value of values) {
    const number = Number(String(value).trim());
    if (!Number.isSafeInteger(number)) throw new Error(`${filename || "the file"}: ${JSON.stringify(value)} is not a sample id (an integer)`);
    ids.push(number);
  }
  return ids;
}

/** Select the ids of `file` that the open epoch holds; reports how many were not in the run. */
export async function importSelection(app, file) {
  try {
    const ids = parseIds(await file.text(), file.name);
    const known = ids.filter((id) => app.sampleRow(id) !== undefined);
    app.setSelection(new Set(known), new Set());
    const missing = ids.length - known.length;
    app.setStatus(`Imported ${known.length} sample ids from ${file.name}${missing ? ` (${missing} not in this run)` : ""}.`, "info");
  } catch (error) {
    app.setStatus(`Import failed: ${error.message}`, "error");
  }
}
