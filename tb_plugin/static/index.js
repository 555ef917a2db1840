// Entry point of the LRP tab. TensorBoard loads this ES module into the plugin's iframe and calls
// render(); index.html does the same when the plugin's routes are opened directly.

// Every module is named here so that the browser fetches them all in parallel, not one import level
// at a time (the views and the modules only they import were a second and third round trip).
import "./api.js";
import { App } from "./app.js";
import "./charts.js";
import "./dom.js";
import "./format.js";
import "./importing.js";
import "./palette.js";
import "./relevance.js";
import "./scatter.js";
import "./state.js";
import "./toolbar.js";
import "./views/clusters.js";
import "./views/embedding.js";
import "./views/findings.js";
import "./views/gallery.js";
import "./views/methods.js";
import "./views/timeline.js";
import { VIEWS } from "./views/index.js";

function loadStyle() {
  return new Promise((resolve) => {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = new URL("style.css", import.meta.url).toString();
    link.addEventListener("load", resolve);
    link.addEventListener("error", resolve);
    document.head.append(link);
  });
}

export async function render() {
  const style = loadStyle();
  document.title = "LRP";
  const root = document.createElement("div");
  root.id = "lrp-app";
  root.className = "lrp";
  document.body.replaceChildren(root);
  const app = new App(root, VIEWS);
  window.lrp = app; // for the browser tests and for poking around in the developer console
  await app.start(style);
  return app;
}
