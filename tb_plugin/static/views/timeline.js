// The timeline of one sample: its heatmap in every epoch, its metadata, and its score and probability
// over training. Opens from the gallery or the embedding (app.openSample); Escape closes it. Signal,
// tabular and token runs show the sample in detail and over the epochs from its values (relevance.js).

import { lineChart } from "../charts.js";
import { h, replace } from "../dom.js";
import { metaText } from "../format.js";
import { isSequenceRun, sampleDetail } from "../relevance.js";
import { revisionMarks } from "./findings.js";

class Timeline {
  constructor(app) {
    this.app = app;
    this.element = h("section", { id: "timeline", class: "panel timeline hidden", "aria-label": "sample timeline" });
    app.root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && app.state.sample !== null && !event.target.closest(".scatter")) app.openSample(null);
    });
  }

  update(topic) {
    const sample = this.app.state.sample;
    if (topic === "sample") {
      if (sample === null) this.close();
      else this.open(sample, true);
    } else if (["epoch", "images", "sampling"].includes(topic) && sample !== null) {
      this.open(sample, false);
    }
  }

  async open(id, scroll) {
    const app = this.app;
    const run = app.state.run;
    let data;
    try {
      data = await app.fetchCached("json", "timeline", { run, sample: id });
    } catch (error) {
      replace(this.element, h("p", { class: "error", text: error.message }));
      this.element.classList.remove("hidden");
      return;
    }
    let marks = [];
    try { // where a revision started (ClArCCallback): the findings answer, cached, holds it
      marks = revisionMarks((await app.fetchCached("json", "findings", { run })).revisions);
    } catch {
      marks = []; // a run without analysis: no marks
    }
    if (app.state.sample !== id || app.state.run !== run) return;
    const s = app.state;
    const kind = s.view === "overlay" ? "overlay" : "heatmap";
    const sequences = isSequenceRun(app);
    const strip = h("div", { class: "strip" + (s.px ? " pixelated" : "") });
    if (!sequences) data.epoch.forEach((epoch, i) => {
      const wrong = data.prediction[i] !== data.label;
      strip.append(h("button", {
        type: "button", class: `frame${epoch === s.epoch ? " current" : ""}${wrong ? " wrong" : ""}`,
        title: `epoch ${epoch}: predicted ${app.className(data.prediction[i])}, score ${data.score[i] === null ? "–" : data.score[i].toFixed(3)}. Show this epoch.`,
        onclick: () => app.setEpoch(epoch),
      },
      h("img", { src: app.imageUrl(kind, id, epoch), alt: `${kind} of sample ${id} in epoch ${epoch}`, width: 72, height: 72, loading: "lazy", fetchpriority: "low" }),
      h("span", { text: `${epoch}${wrong ? " ✗" : ""}` })));
    });
    const good = data.prediction.map((prediction) => prediction === data.label);
    const head = h("div", { class: "panel-head" },
      h("h2", { text: `Sample ${id} over ${data.epoch.length} epochs` }),
      h("span", { class: "muted", text: `label ${app.className(data.label)}` }),
      h("span", { class: "spacer" }),
      h("button", { id: "close-timeline", type: "button", text: "Close", onclick: () => app.openSample(null) }));
    const input = app.info.thumbnails && !sequences
      ? h("img", { class: "timeline-input", src: app.imageUrl("input", id), alt: `input of sample ${id}`, width: 96, height: 96 })
      : null;
    const metadata = app.sampleMetadata(id);
    const details = metadata.length
      ? h("div", { class: "sample-metadata", role: "list", "aria-label": `metadata of sample ${id}` },
        metadata.map(([name, value]) => h("div", { class: "metadata-row", role: "listitem", dataset: { name } },
          h("span", { class: "metadata-name", text: `${name}: ` }), h("span", { class: "metadata-value", text: metaText(value) }))))
      : null;
    const pick = (epoch) => app.setEpoch(epoch);
    const body = sequences ? sampleDetail(app, id)
      : h("div", { class: "timeline-body" + (s.px ? " pixelated" : "") }, input, strip);
    replace(this.element, head, details, body,
      h("div", { class: "charts" },
        lineChart({ xs: data.epoch, ys: data.score, good, current: s.epoch, label: "score", onPick: pick, marks }),
        lineChart({ xs: data.epoch, ys: data.probability, good, current: s.epoch, label: "probability", onPick: pick, marks })));
    this.element.classList.remove("hidden");
    this.element.dataset.sample = String(id);
    if (scroll) this.element.scrollIntoView({ block: "nearest" });
  }

  close() {
    this.element.classList.add("hidden");
    delete this.element.dataset.sample;
  }
}

export default {
  id: "timeline",
  slot: "bottom",
  params: {}, // the open sample (app.state.sample) is shared: the gallery and the embedding open it
  create: (app) => new Timeline(app),
};
