// The findings panel, first on the page: the run's findings (one per artifact or strategy that the
// analysis found, merged over clusterings and epochs), each with its members' mean heatmap in every
// epoch it was seen and its strength over the epochs. A click opens the finding: its category, its
// last epoch, and its members selected in the embedding and the gallery. The open finding is in the
// URL (`finding`), so a shared link reopens it.

import { url } from "../api.js";
import { lineChart } from "../charts.js";
import { h, replace, svg } from "../dom.js";
import { isSequenceRun, prototypePicture } from "../relevance.js";

const METHOD_NAMES = { rrclarc: "RR-ClArC", pclarc: "P-ClArC", aclarc: "A-ClArC" };

/** Marks on the epoch axis where a revision of the run started (ClArCCallback), for lineChart. */
export function revisionMarks(revisions) {
  return (revisions || []).filter((r) => r.start_epoch !== null && r.method).map((r) => ({
    x: r.start_epoch, short: `${METHOD_NAMES[r.method] || r.method}`,
    text: `revision of ${r.finding_id} with ${METHOD_NAMES[r.method] || r.method} from epoch ${r.start_epoch}`,
  }));
}

const STRIP_EPOCHS = 8;

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

function significance(q) {
  if (q === null || q === undefined) return "q –";
  return q < 0.001 ? `q = ${q.toExponential(1)}` : `q = ${q.toPrecision(2)}`;
}

/** Epochs as short text: "0–3, 5". */
function epochRanges(epochs) {
  const parts = [];
  for (let i = 0; i < epochs.length; ) {
    let j = i;
    while (j + 1 < epochs.length && epochs[j + 1] === epochs[j] + 1) j += 1;
    parts.push(j > i ? `${epochs[i]}–${epochs[j]}` : `${epochs[i]}`);
    i = j + 1;
  }
  return parts.join(", ");
}

/** A small line of the finding's strength (relevance share in the region minus the rest's) over the epochs. */
function sparkline(history, epochs, label) {
  const width = 120;
  const height = 34;
  const pad = 4;
  const xs = epochs.length > 1 ? [epochs[0], epochs[epochs.length - 1]] : [epochs[0] - 1, epochs[0] + 1];
  const values = history.map((entry) => entry.strength).filter((v) => v !== null && Number.isFinite(v));
  const high = Math.max(0.05, ...values);
  const sx = (x) => pad + ((x - xs[0]) / (xs[1] - xs[0] || 1)) * (width - 2 * pad);
  const sy = (y) => height - pad - (Math.max(0, y) / high) * (height - 2 * pad);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "sparkline", role: "img", "aria-label": label });
  root.append(svg("line", { x1: pad, x2: width - pad, y1: height - pad, y2: height - pad, class: "base" }));
  const points = history.filter((entry) => entry.strength !== null && Number.isFinite(entry.strength));
  if (points.length > 1) {
    root.append(svg("polyline", { points: points.map((e) => `${sx(e.epoch)},${sy(e.strength)}`).join(" "), class: "line" }));
  }
  for (const entry of points) {
    const dot = svg("circle", { cx: sx(entry.epoch), cy: sy(entry.strength), r: 2.5, class: "dot" });
    dot.append(svg("title", { text: `epoch ${entry.epoch}: strength ${percent(entry.strength)}, ${entry.n_members} samples` }));
    root.append(dot);
  }
  return root;
}

class Findings {
  constructor(app) {
    this.app = app;
    this.data = null; // the /findings answer for this run
    this.key = null; // which analysed epochs it was asked for
    this.list = h("ol", { id: "findings", class: "findings", "aria-label": "findings" });
    this.summary = h("p", { id: "findings-summary", class: "muted" });
    this.element = h("section", { class: "panel findings-panel", "aria-label": "findings" },
      h("div", { class: "panel-head" }, h("h2", { text: "Findings" }), this.summary), this.list);
  }

  update(topic, changes = {}) {
    const selected = topic === "selection" || (topic === "points" && "sel" in changes);
    if (selected && this.app.state.finding && !("finding" in changes)) {
      // Another selection closes the finding (the key is this view's own), so a shared link does not
      // reopen a finding next to samples that are not its members.
      this.app.state.finding = null;
    }
    if (topic === "run") {
      this.data = null;
      this.key = null;
      replace(this.list);
      this.summary.textContent = "";
    } else if (topic === "epoch") {
      this.load();
    } else if (["images", "sampling", "points", "selection"].includes(topic)) {
      this.render();
    }
  }

  async load() {
    const app = this.app;
    const run = app.state.run;
    // Asked again when an epoch gains or loses its analysis (a running training, a new lrp-analyze).
    const key = JSON.stringify([run, app.info.epochs.map((e) => [e.epoch, e.version, e.analysis])]);
    if (key === this.key && this.data) {
      this.render();
      return;
    }
    try {
      const data = await app.fetchCached("json", "findings", { run });
      if (app.state.run !== run) return; // another run was opened meanwhile (the findings span every epoch)
      this.data = data;
      this.key = key;
      this.render();
    } catch (error) {
      if (app.state.run === run) replace(this.list, h("li", { class: "error", text: error.message }));
    }
  }

  /** Pick at most STRIP_EPOCHS of the finding's epochs, always the first, the last and the current one. */
  stripEpochs(finding) {
    const epochs = finding.history.map((entry) => entry.epoch);
    if (epochs.length <= STRIP_EPOCHS) return epochs;
    const picked = new Set([epochs[0], epochs[epochs.length - 1]]);
    if (epochs.includes(this.app.state.epoch)) picked.add(this.app.state.epoch);
    for (let i = 0; picked.size < STRIP_EPOCHS && i < STRIP_EPOCHS; i += 1) {
      picked.add(epochs[Math.round((i * (epochs.length - 1)) / (STRIP_EPOCHS - 1))]);
    }
    return epochs.filter((epoch) => picked.has(epoch));
  }

  render() {
    const app = this.app;
    const data = this.data;
    if (!data) return;
    const s = app.state;
    const findings = data.findings;
    if (!findings.length) {
      let text;
      if ((data.revisions || []).some((r) => r.status === "nothing to revise")) {
        text = `No findings${data.epochs.length ? ` in epochs ${epochRanges(data.epochs)}` : ""}: ClArC had nothing to revise.`;
      } else if (!data.epochs.length && data.without_findings.length) {
        text = "The analysis of this run predates findings: run `lrp-analyze` on the run again to find artifacts and strategies.";
      } else if (!data.epochs.length) {
        text = "No analysed epoch yet: run `lrp-analyze` on the run (or let LRPCallback analyse) to find artifacts and strategies.";
      } else {
        text = `No findings in epochs ${epochRanges(data.epochs)}: no cluster concentrates its relevance where the rest of its category does not, beyond what chance explains.`;
      }
      this.summary.textContent = "";
      replace(this.list, h("li", { class: "muted finding-empty", text }));
      return;
    }
    const open = findings.find((f) => f.finding_id === s.finding) || null;
    const nothing = (data.revisions || []).some((r) => r.status === "nothing to revise");
    this.summary.textContent = `${findings.length} in epochs ${epochRanges(data.epochs)}${open ? "" : " · click one to select its samples"}${nothing ? " · ClArC: nothing to revise" : ""}`;
    replace(this.list, findings.map((finding) => this.item(finding, finding === open)));
  }

  item(finding, isOpen) {
    const app = this.app;
    const s = app.state;
    const kind = finding.kind === "artifact" ? "" : ` (${finding.kind})`;
    const title = `${finding.category_name}: ${finding.region}${kind}`;
    const seen = finding.epochs_seen.length ? epochRanges(finding.epochs_seen) : String(finding.last_epoch);
    const facts = `${finding.n_members} samples in epoch ${finding.last_epoch} · since epoch ${finding.first_epoch} · seen in ${seen} · strength ${percent(finding.strength)} · ${significance(finding.q_value)}`;
    // An image run's finding: its members' mean heatmap per epoch. A signal's, a table's or a text's: drawn
    // from values, as the clusters' prototypes are (a relevance line, bars per feature, the top tokens).
    const values = isSequenceRun(app);
    const [rows, columns] = app.info.heatmap_shape || [1, 1]; // a wide map: a wide, low picture
    const [width, height] = columns >= 3 * Math.max(rows, 1) ? [96, 16] : [44, 44];
    const strip = h("div", { class: "finding-strip" + (values ? ` values ${app.info.modality}` : "") + (s.px ? " pixelated" : "") });
    for (const epoch of this.stripEpochs(finding)) {
      const entry = finding.history.find((e) => e.epoch === epoch);
      const version = app.info.epochs.find((e) => e.epoch === epoch)?.version;
      const params = { run: s.run, finding: finding.finding_id, epoch, cmap: s.cmap, v: version };
      const title = `epoch ${epoch}: ${entry.n_members} samples, strength ${percent(entry.strength)}`;
      const picture = values ? prototypePicture(app, params, title, "finding_values")
        : h("img", { src: url("finding_map", params), alt: `mean heatmap of the finding's ${entry.n_members} samples in epoch ${epoch}`,
          title, width, height, loading: "lazy" });
      strip.append(h("figure", { class: epoch === s.epoch ? "current" : "" }, picture, h("figcaption", { text: `ep ${epoch}` })));
    }
    const epochs = finding.history.map((e) => e.epoch);
    const button = h("button", { type: "button", class: "finding-open", "aria-pressed": isOpen ? "true" : "false",
      title: finding.reason, onclick: () => this.open(finding) },
      h("span", { class: "finding-title", text: title }),
      h("span", { class: "finding-facts muted", text: facts }));
    return h("li", { class: "finding" + (isOpen ? " open" : ""), dataset: { finding: finding.finding_id } },
      button,
      h("div", { class: "finding-body" },
        strip,
        h("div", { class: "finding-trend" }, sparkline(finding.history, epochs, `strength of ${title} over epochs`),
          h("span", { class: "muted", text: "strength over epochs" }))),
      this.revision(finding, title),
      isOpen ? h("p", { class: "finding-reason", text: finding.reason }) : null);
  }

  /** The finding's revision (ClArCCallback), if any: its strength fading and the artifact sensitivity over epochs. */
  revision(finding, title) {
    const record = (this.data.revisions || []).find((r) => r.finding_id === finding.finding_id);
    if (!record || !record.epochs.length) return null;
    const app = this.app;
    const xs = record.epochs.map((e) => e.epoch);
    const marks = revisionMarks([record]);
    const method = record.method ? `revised with ${METHOD_NAMES[record.method] || record.method} from epoch ${record.start_epoch}` : "measured, not revised";
    const quality = record.cav_auc === null ? "" : ` · artifact direction: held-out AUC ${record.cav_auc.toFixed(2)}`;
    const last = record.epochs[record.epochs.length - 1];
    const facts = `${method}${quality} · epoch ${last.epoch}: sensitivity ${percent(last.artifact_sensitivity)}, strength ${percent(last.strength)}`;
    const pick = (epoch) => app.setEpoch(epoch);
    return h("div", { class: "finding-revision", dataset: { method: record.method || "none", start: String(record.start_epoch) } },
      h("p", { class: "muted revision-facts", text: facts }),
      h("div", { class: "charts" },
        lineChart({ xs, ys: record.epochs.map((e) => e.strength), current: app.state.epoch, marks, onPick: pick,
          label: `strength of ${title} (same samples)` }),
        lineChart({ xs, ys: record.epochs.map((e) => e.artifact_sensitivity), current: app.state.epoch, marks, onPick: pick,
          label: "artifact sensitivity" })));
  }

  /** Open a finding: its category, its last epoch, its members selected (in the embedding and the gallery). */
  async open(finding) {
    const app = this.app;
    if (app.state.epoch !== finding.last_epoch) {
      await app.setEpoch(finding.last_epoch);
      if (app.state.epoch !== finding.last_epoch) return; // another epoch was chosen meanwhile
    }
    const ids = new Set(finding.member_ids);
    if (app.state.cat !== finding.category) {
      await app.update({ ...app.categoryChanges(finding.category), finding: finding.finding_id, sel: ids }, "points");
    }
    await app.update({ finding: finding.finding_id, sel: ids, selc: new Set() }, "selection");
  }
}

export default {
  id: "findings",
  slot: "top",
  params: { finding: { read: (text) => text ?? null, write: (value) => value, perRun: true } },
  create: (app) => new Findings(app),
};
