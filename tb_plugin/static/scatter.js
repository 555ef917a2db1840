// Canvas scatter plot for up to ~100k points: pixels written into one ImageData, a screen-space grid
// for hover lookups, box selection, wheel zoom, pan, and keyboard navigation between points.

const BACKGROUND = [255, 255, 255];
const HOVER_RADIUS = 9; // CSS pixels
const CELL = 12; // CSS pixels per grid cell of the hover index
const LABEL_HEIGHT = 16; // CSS pixels of a marker's label (12px text and its halo)
const LABEL_GAP = 2;
const LABEL_PAD = 2;

function pack([r, g, b], alpha = 255) {
  return ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0; // ImageData is RGBA bytes: little-endian uint32
}

function mix(color, weight) {
  return color.map((c, i) => Math.round(c * (1 - weight) + BACKGROUND[i] * weight));
}

export class Scatter {
  /**
   * @param {Object} callbacks
   * @param {(index: number|null, clientX: number, clientY: number) => void} callbacks.onHover
   * @param {(indices: number[], mode: "replace"|"add") => void} callbacks.onSelect
   * @param {(index: number) => void} callbacks.onToggle  Space on a focused point
   * @param {(index: number) => void} callbacks.onActivate  click or Enter on a point
   */
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.element = document.createElement("div");
    this.element.className = "scatter";
    this.canvas = document.createElement("canvas");
    this.canvas.className = "scatter-points";
    this.overlay = document.createElement("canvas");
    this.overlay.className = "scatter-overlay";
    this.overlay.tabIndex = 0;
    this.overlay.setAttribute("role", "application");
    this.overlay.setAttribute("aria-label",
      "Embedding scatter plot. Drag to box-select (Shift adds), wheel to zoom, Alt-drag to pan. " +
      "Arrow keys move between points, Space toggles a point's selection, Enter opens its timeline, " +
      "Escape clears the selection, + and - zoom, 0 resets the view.");
    this.element.append(this.canvas, this.overlay);
    this.count = 0;
    this.x = new Float32Array(0);
    this.y = new Float32Array(0);
    this.colors = new Uint16Array(0);
    this.palette = [[80, 80, 80]];
    this.selected = null;
    this.emphasis = null;
    this.markers = [];
    this.markerBoxes = [];
    this.hover = null;
    this.focus = null;
    this.drag = null;
    this.bounds = [0, 1, 0, 1];
    this.view = null;
    this.width = 0;
    this.height = 0;
    this.frame = 0;
    this.drawCount = 0;
    this._bind();
    new ResizeObserver(() => this._resize()).observe(this.element);
  }

  /** Points in data coordinates, a palette index per point and the palette of [r, g, b]. */
  setData({ x, y, colors, palette, bounds }) {
    this.count = x.length;
    this.x = x;
    this.y = y;
    this.colors = colors;
    this.palette = palette;
    this.selected = null;
    this.hover = null;
    this.focus = null;
    const [x0, x1, y0, y1] = bounds || [0, 1, 0, 1];
    const padX = (x1 - x0 || 1) * 0.05;
    const padY = (y1 - y0 || 1) * 0.05;
    this.bounds = [x0 - padX, x1 + padX, y0 - padY, y1 + padY];
    if (!this.view) this.view = [...this.bounds];
    this.request();
  }

  setColors(colors, palette) {
    this.colors = colors;
    this.palette = palette;
    this.request();
  }

  /** @param {Uint8Array|null} mask 1 for selected points; null when nothing is selected. */
  setSelection(mask) {
    this.selected = mask;
    this.request();
  }

  /** @param {Uint8Array|null} mask 1 for points drawn on top of the others (flagged clusters). */
  setEmphasis(mask) {
    this.emphasis = mask;
    this.request();
  }

  /** Labels drawn over the points, e.g. flagged clusters: [{x, y, text}] in data coordinates. */
  setMarkers(markers) {
    this.markers = markers;
    this.request();
  }

  resetView() {
    this.view = [...this.bounds];
    this.request();
  }

  /** Keep the current zoom when new data arrives (epoch switch) only if asked. */
  fitNextData() {
    this.view = null;
  }

  request() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  // ------------------------------------------------------------------------------ geometry

  _resize() {
    const width = this.element.clientWidth;
    const height = this.element.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    this.ratio = ratio;
    this.width = width;
    this.height = height;
    for (const canvas of [this.canvas, this.overlay]) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    this.image = null;
    this.draw();
  }

  _transform() {
    const [x0, x1, y0, y1] = this.view || this.bounds;
    const kx = this.width / (x1 - x0 || 1);
    const ky = this.height / (y1 - y0 || 1);
    return { x0, y1, kx, ky };
  }

  toScreen(index) {
    const { x0, y1, kx, ky } = this._transform();
    return [(this.x[index] - x0) * kx, (y1 - this.y[index]) * ky];
  }

  _toData(sx, sy) {
    const { x0, y1, kx, ky } = this._transform();
    return [x0 + sx / kx, y1 - sy / ky];
  }

  // ------------------------------------------------------------------------------ drawing

  draw() {
    if (!this.width || !this.height) return;
    const ratio = this.ratio || 1;
    const width = this.canvas.width;
    const height = this.canvas.height;
    const context = this.canvas.getContext("2d");
    if (!this.image || this.image.width !== width || this.image.height !== height) {
      this.image = context.createImageData(width, height);
      this.pixels = new Uint32Array(this.image.data.buffer);
    }
    const pixels = this.pixels;
    pixels.fill(pack(BACKGROUND));
    const { x0, y1, kx, ky } = this._transform();
    const n = this.count;
    this.sx = new Float32Array(n);
    this.sy = new Float32Array(n);
    const radius = Math.max(1, Math.round((n > 20000 ? 1 : n > 2000 ? 1.5 : 2.5) * ratio));
    const full = this.palette.map((color) => pack(color));
    const dim = this.palette.map((color) => pack(mix(color, 0.78)));
    const selection = this.selected;
    const outline = pack([20, 20, 20]);
    const plot = (i, color, ring) => {
      const cx = Math.round(this.sx[i] * ratio);
      const cy = Math.round(this.sy[i] * ratio);
      const r = ring ? radius + 1 : radius;
      if (cx < -r || cy < -r || cx >= width + r || cy >= height + r) return;
      const limit = r * r + r; // a round dot (a 3x3 square for r = 1)
      const inner = (r - 1) * (r - 1) + (r - 1);
      const left = Math.max(0, cx - r);
      const right = Math.min(width - 1, cx + r);
      const top = Math.max(0, cy - r);
      const bottom = Math.min(height - 1, cy + r);
      for (let py = top; py <= bottom; py += 1) {
        const row = py * width;
        const dy = (py - cy) * (py - cy);
        for (let px = left; px <= right; px += 1) {
          const distance = dy + (px - cx) * (px - cx);
          if (distance > limit) continue;
          pixels[row + px] = ring && distance > inner ? outline : color;
        }
      }
    };
    for (let i = 0; i < n; i += 1) {
      this.sx[i] = (this.x[i] - x0) * kx;
      this.sy[i] = (y1 - this.y[i]) * ky;
    }
    const emphasis = this.emphasis;
    for (const pass of emphasis ? [0, 1] : [0]) {
      for (let i = 0; i < n; i += 1) {
        if (!Number.isFinite(this.sx[i]) || !Number.isFinite(this.sy[i])) continue;
        if ((selection && selection[i]) || (emphasis && emphasis[i] !== pass)) continue;
        plot(i, selection ? dim[this.colors[i]] : full[this.colors[i]], false);
      }
    }
    if (selection) {
      for (let i = 0; i < n; i += 1) {
        if (selection[i] && Number.isFinite(this.sx[i]) && Number.isFinite(this.sy[i])) plot(i, full[this.colors[i]], true);
      }
    }
    context.putImageData(this.image, 0, 0);
    this._index();
    this.drawOverlay();
    this.drawCount += 1;
    this.element.dataset.points = String(n);
    this.element.dataset.draws = String(this.drawCount);
  }

  drawOverlay() {
    const ratio = this.ratio || 1;
    const context = this.overlay.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, this.width, this.height);
    context.font = "12px system-ui, sans-serif";
    context.textBaseline = "middle";
    this.markerBoxes = this._layoutMarkers(context);
    for (const box of this.markerBoxes) {
      const { sx, sy, text } = box;
      const middle = (box.top + box.bottom) / 2;
      if (box.moved) { // a label pushed away from its cluster: a line leads back to the ring
        const edge = box.left > sx ? box.left : box.right;
        const angle = Math.atan2(middle - sy, edge - sx);
        context.beginPath();
        context.lineWidth = 1;
        context.strokeStyle = "rgba(183, 28, 28, 0.6)";
        context.moveTo(sx + 8 * Math.cos(angle), sy + 8 * Math.sin(angle));
        context.lineTo(edge, middle);
        context.stroke();
      }
      context.lineWidth = 3;
      context.strokeStyle = "rgba(255,255,255,0.9)";
      context.strokeText(text, box.left + LABEL_PAD, middle);
      context.fillStyle = "#b71c1c";
      context.fillText(text, box.left + LABEL_PAD, middle);
      context.beginPath(); // a ring, so the points under it stay visible
      context.lineWidth = 1.5;
      context.strokeStyle = "#b71c1c";
      context.arc(sx, sy, 8, 0, 2 * Math.PI);
      context.stroke();
    }
    for (const [index, color] of [[this.focus, "#1565c0"], [this.hover, "#111"]]) {
      if (index === null || index >= this.count) continue;
      context.beginPath();
      context.lineWidth = 2;
      context.strokeStyle = color;
      context.arc(this.sx[index], this.sy[index], 7, 0, 2 * Math.PI);
      context.stroke();
    }
    if (this.drag && this.drag.mode === "box") {
      const { startX, startY, x, y } = this.drag;
      context.fillStyle = "rgba(21, 101, 192, 0.12)";
      context.strokeStyle = "#1565c0";
      context.lineWidth = 1;
      context.fillRect(Math.min(startX, x), Math.min(startY, y), Math.abs(x - startX), Math.abs(y - startY));
      context.strokeRect(Math.min(startX, x) + 0.5, Math.min(startY, y) + 0.5, Math.abs(x - startX), Math.abs(y - startY));
    }
  }

  /**
   * Where each marker's label goes, in CSS pixels: [{left, top, right, bottom, sx, sy, text, moved}].
   * Labels never overlap one another nor cover a ring: each takes the first free place, right of its
   * ring, left of it, then a row further up or down, alternately (several flagged clusters often lie
   * side by side).
   */
  _layoutMarkers(context) {
    const { x0, y1, kx, ky } = this._transform();
    const anchors = this.markers
      .map((marker) => ({ sx: (marker.x - x0) * kx, sy: (y1 - marker.y) * ky, text: marker.text }))
      .filter((a) => Number.isFinite(a.sx) && Number.isFinite(a.sy));
    const rings = anchors.map(({ sx, sy }) => ({ left: sx - 9, right: sx + 9, top: sy - 9, bottom: sy + 9 }));
    const boxes = [];
    const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    for (const { sx, sy, text } of anchors) {
      const width = context.measureText(text).width + 2 * LABEL_PAD;
      const place = (row, side) => {
        let left = side > 0 ? sx + 10 : sx - 10 - width;
        let top = sy - LABEL_HEIGHT / 2 + row * (LABEL_HEIGHT + LABEL_GAP);
        // inside the plot where it fits, so a label near an edge is not cut off
        left = Math.max(0, Math.min(left, this.width - width));
        top = Math.max(0, Math.min(top, this.height - LABEL_HEIGHT));
        return { left, top, right: left + width, bottom: top + LABEL_HEIGHT, sx, sy, text, moved: row !== 0 };
      };
      let chosen = null;
      for (let step = 0; !chosen && step <= 2 * (boxes.length + rings.length); step += 1) {
        const row = step % 2 ? -Math.ceil(step / 2) : step / 2; // 0, -1, 1, -2, 2 ...
        for (const side of [1, -1]) {
          const box = place(row, side);
          if (!boxes.some((other) => overlaps(box, other)) && !rings.some((ring) => overlaps(box, ring))) {
            chosen = box;
            break;
          }
        }
      }
      // Only a plot too small for all labels gets here: the next free row below the others.
      if (!chosen) {
        const top = Math.max(0, ...boxes.map((b) => b.bottom + LABEL_GAP));
        chosen = { ...place(0, 1), top, bottom: top + LABEL_HEIGHT, moved: true };
      }
      boxes.push(chosen);
    }
    return boxes;
  }

  // A screen-space grid of point indices (counting sort by cell) for hover lookups in O(1).
  _index() {
    const columns = Math.max(1, Math.ceil(this.width / CELL));
    const rows = Math.max(1, Math.ceil(this.height / CELL));
    const cells = new Int32Array(this.count).fill(-1);
    const starts = new Int32Array(columns * rows + 1);
    for (let i = 0; i < this.count; i += 1) {
      const cx = Math.floor(this.sx[i] / CELL);
      const cy = Math.floor(this.sy[i] / CELL);
      if (cx < 0 || cy < 0 || cx >= columns || cy >= rows) continue;
      cells[i] = cy * columns + cx;
      starts[cells[i] + 1] += 1;
    }
    for (let c = 0; c < columns * rows; c += 1) starts[c + 1] += starts[c];
    const fill = starts.slice(0, -1);
    const items = new Int32Array(starts[columns * rows]);
    for (let i = 0; i < this.count; i += 1) if (cells[i] >= 0) items[fill[cells[i]]++] = i;
    this.grid = { columns, rows, starts, items };
  }

  /** Index of the point nearest to (sx, sy) in CSS pixels, within `radius`, or null. */
  nearest(sx, sy, radius = HOVER_RADIUS) {
    if (!this.grid) return null;
    const { columns, rows, starts, items } = this.grid;
    let best = null;
    let bestDistance = radius * radius;
    const reach = Math.ceil(radius / CELL);
    const cx = Math.floor(sx / CELL);
    const cy = Math.floor(sy / CELL);
    for (let y = Math.max(0, cy - reach); y <= Math.min(rows - 1, cy + reach); y += 1) {
      for (let x = Math.max(0, cx - reach); x <= Math.min(columns - 1, cx + reach); x += 1) {
        const cell = y * columns + x;
        for (let k = starts[cell]; k < starts[cell + 1]; k += 1) {
          const i = items[k];
          const distance = (this.sx[i] - sx) ** 2 + (this.sy[i] - sy) ** 2;
          if (distance <= bestDistance) {
            bestDistance = distance;
            best = i;
          }
        }
      }
    }
    return best;
  }

  /** Indices of points inside a screen rectangle (CSS pixels). */
  inside(left, top, right, bottom) {
    const result = [];
    for (let i = 0; i < this.count; i += 1) {
      if (this.sx[i] >= left && this.sx[i] <= right && this.sy[i] >= top && this.sy[i] <= bottom) result.push(i);
    }
    return result;
  }

  zoom(factor, sx = this.width / 2, sy = this.height / 2) {
    const [cx, cy] = this._toData(sx, sy);
    const [x0, x1, y0, y1] = this.view || this.bounds;
    this.view = [cx - (cx - x0) * factor, cx + (x1 - cx) * factor, cy - (cy - y0) * factor, cy + (y1 - cy) * factor];
    this.request();
  }

  // ------------------------------------------------------------------------------ input

  _local(event) {
    const rect = this.overlay.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  _setHover(index, event) {
    if (index === this.hover) return;
    this.hover = index;
    this.drawOverlay();
    this.callbacks.onHover(index, event ? event.clientX : 0, event ? event.clientY : 0);
  }

  _bind() {
    const overlay = this.overlay;
    overlay.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 && event.button !== 1) return;
      const [x, y] = this._local(event);
      const pan = event.button === 1 || event.altKey;
      this.drag = { mode: pan ? "pan" : "box", startX: x, startY: y, x, y, view: [...(this.view || this.bounds)] };
      overlay.setPointerCapture(event.pointerId);
      event.preventDefault();
      overlay.focus({ preventScroll: true });
    });
    overlay.addEventListener("pointermove", (event) => {
      const [x, y] = this._local(event);
      if (!this.drag) {
        this._setHover(this.nearest(x, y), event);
        return;
      }
      this.drag.x = x;
      this.drag.y = y;
      if (this.drag.mode === "pan") {
        const { kx, ky } = this._transform();
        const dx = (x - this.drag.startX) / kx;
        const dy = (y - this.drag.startY) / ky;
        const [x0, x1, y0, y1] = this.drag.view;
        this.view = [x0 - dx, x1 - dx, y0 + dy, y1 + dy];
        this.request();
      } else {
        this.drawOverlay();
      }
    });
    overlay.addEventListener("pointerup", (event) => {
      const drag = this.drag;
      this.drag = null;
      if (!drag) return;
      const [x, y] = this._local(event);
      if (drag.mode === "box") {
        const moved = Math.abs(x - drag.startX) + Math.abs(y - drag.startY);
        if (moved < 4) {
          const index = this.nearest(x, y);
          if (index !== null) this.callbacks.onActivate(index);
        } else {
          const indices = this.inside(Math.min(x, drag.startX), Math.min(y, drag.startY),
            Math.max(x, drag.startX), Math.max(y, drag.startY));
          this.callbacks.onSelect(indices, event.shiftKey || event.ctrlKey || event.metaKey ? "add" : "replace");
        }
      }
      this.drawOverlay();
    });
    overlay.addEventListener("pointerleave", () => {
      if (!this.drag) this._setHover(null, null);
    });
    overlay.addEventListener("wheel", (event) => {
      event.preventDefault();
      const [x, y] = this._local(event);
      this.zoom(event.deltaY > 0 ? 1.2 : 1 / 1.2, x, y);
    }, { passive: false });
    overlay.addEventListener("dblclick", () => this.resetView());
    overlay.addEventListener("keydown", (event) => this._key(event));
  }

  _key(event) {
    const directions = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (event.key in directions) {
      event.preventDefault();
      this._moveFocus(...directions[event.key]);
    } else if (event.key === "Enter" && this.focus !== null) {
      event.preventDefault();
      this.callbacks.onActivate(this.focus);
    } else if (event.key === " " && this.focus !== null) {
      event.preventDefault();
      this.callbacks.onToggle(this.focus);
    } else if (event.key === "Escape") {
      this.callbacks.onSelect([], "replace");
    } else if (event.key === "+" || event.key === "=") {
      this.zoom(1 / 1.25);
    } else if (event.key === "-") {
      this.zoom(1.25);
    } else if (event.key === "0") {
      this.resetView();
    }
  }

  _moveFocus(dx, dy) {
    if (!this.count) return;
    const [fx, fy] = this.focus === null ? [this.width / 2, this.height / 2] : [this.sx[this.focus], this.sy[this.focus]];
    let best = null;
    let bestScore = Infinity;
    for (let i = 0; i < this.count; i += 1) {
      if (i === this.focus || !Number.isFinite(this.sx[i])) continue;
      const ox = this.sx[i] - fx;
      const oy = this.sy[i] - fy;
      const along = ox * dx + oy * dy;
      const across = Math.abs(ox * dy - oy * dx);
      if (this.focus !== null && (along <= 0 || across > along)) continue; // within 45 degrees of the arrow
      const score = this.focus === null ? ox * ox + oy * oy : along + 2 * across;
      if (score < bestScore) {
        bestScore = score;
        best = i;
      }
    }
    if (best === null) return;
    this.focus = best;
    this.drawOverlay();
    const rect = this.overlay.getBoundingClientRect();
    this.callbacks.onHover(best, rect.left + this.sx[best], rect.top + this.sy[best]);
  }
}
