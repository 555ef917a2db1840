// Colours shared by the views: categorical colours for clusters, labels and metadata values.

// Categorical colours (Tableau 20 order, dark shades first), grey for noise and unclustered points.
export const PALETTE = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
  [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
  [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [199, 199, 199],
  [219, 219, 141], [158, 218, 229],
];
export const NOISE = [165, 165, 165];
export const UNCLUSTERED = [215, 215, 215];
export const CORRECT = [46, 125, 50];
export const WRONG = [211, 47, 47];

export function css([r, g, b]) {
  return `rgb(${r}, ${g}, ${b})`;
}

export function clusterColor(cluster) {
  if (cluster === -1) return NOISE;
  if (cluster < 0) return UNCLUSTERED;
  return PALETTE[cluster % PALETTE.length];
}
