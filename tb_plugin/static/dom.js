// DOM helpers: every text goes through textContent, nothing is parsed as HTML.

/**
 * Create an element.
 * @param {string} tag
 * @param {Object} [props] attributes; `class`, `text` (textContent), `on<Event>` handlers,
 *   `dataset`, `style` (object); `false`/`null` values are skipped.
 * @param {...(Node|string|null|undefined|Array)} children
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") element.textContent = String(value);
    else if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key === "style") Object.assign(element.style, value);
    else if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key in element && typeof value !== "string") element[key] = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace all children of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** A <select> with options [{value, label, disabled}] and the given value selected. */
export function select(options, value, props = {}) {
  const element = h("select", props);
  for (const option of options) {
    element.append(h("option", { value: String(option.value), text: option.label ?? option.value,
      disabled: option.disabled || false }));
  }
  if (value !== undefined && value !== null) element.value = String(value);
  return element;
}

export function setOptions(element, options, value) {
  element.replaceChildren(...options.map((option) => h("option", {
    value: String(option.value), text: option.label ?? option.value, disabled: option.disabled || false })));
  if (value !== undefined && value !== null) element.value = String(value);
}

/** A labelled control: <label><span>text</span>control</label>. */
export function field(label, control, props = {}) {
  return h("label", { class: "field", ...props }, h("span", { class: "field-label", text: label }), control);
}

export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") element.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2).toLowerCase(), value);
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) if (child) element.append(child);
  return element;
}

/** Download `text` as a file (export of sample ids). */
export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href: url, download: filename, class: "hidden" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
