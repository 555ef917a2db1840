// The view registry: the tab's panels, in page order. Adding a view is one module in this folder and
// one line in VIEWS (docs/recipes/plugin_view.md); the shell (app.js) builds, places and updates them.
//
// A view module's default export:
//   id         name of the view: its root element gets data-view=<id>; app.views[id] is its instance.
//   slot       "top" (full width, above the embedding row), "main" (the two-column row with the
//              embedding and the clusters) or "bottom" (full width, below).
//   params     the URL-hash keys the view owns, {key: {read, write, perRun}} (state.js's `param`
//              helpers build them); their values live in app.state with the shared ones. {} for none.
//   create(app)  builds the view's DOM once and returns its instance:
//                {element, floating?, update?(topic, changes)}; `floating` (a tooltip) goes at the end.
//
// update(topic, changes) is called on every view, in this order, when the shared state or data change:
//   "run"        another run is open: app.info (before its epoch loads)
//   "epoch"      an epoch's data is here: app.samples, app.analysis, app.points, app.clusters
//   "points"     the category, embedding or clustering changed: app.points, app.clusters are new
//   "colors"     colour-by changed
//   "images"     colour map or gallery image kind changed (every heatmap URL changes)
//   "sampling"   image size or pixelation changed
//   "gallery"    the gallery's filter or page size changed
//   "selection"  app.state.sel / selc changed (app.selectedIds())
//   "sample"     app.state.sample (the open sample) changed; null closes it
// `changes` is the object given to app.update. A view changes the shared state with
// app.update(changes, topic), app.setSelection(ids, clusters), app.setEpoch(epoch) and
// app.openSample(id); async work compares app.token before and after to drop stale answers.

import clusters from "./clusters.js";
import embedding from "./embedding.js";
import findings from "./findings.js";
import gallery from "./gallery.js";
import methods from "./methods.js";
import timeline from "./timeline.js";

export const VIEWS = [findings, embedding, clusters, timeline, methods, gallery];
