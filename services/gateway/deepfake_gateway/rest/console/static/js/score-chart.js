// The chart of per-frame scores, one line per face track (Chart.js, vendored): clicking a point, or choosing a
// frame from the list under it (keyboard), selects that frame.

const TRACK_COLOURS = ["#1f6feb", "#8250df", "#bf3989", "#0a7f6f", "#9a6700", "#57606a"];

export function trackColour(index) {
  return TRACK_COLOURS[index % TRACK_COLOURS.length];
}

function thresholdLine(label, value, xs, colour) {
  return {
    label, data: [{ x: Math.min(...xs), y: value }, { x: Math.max(...xs), y: value }],
    borderColor: colour, borderDash: [6, 4], borderWidth: 1, pointRadius: 0, pointHitRadius: 0, isThreshold: true,
  };
}

/**
 * Draw the chart in `canvas`; `onSelect(trackId, frameIndex)` on click. Returns the Chart (destroy() it later).
 * Points of frames with a heatmap are drawn larger.
 */
export function drawScoreChart(canvas, result, onSelect) {
  const tracks = result.tracks.filter((track) => track.frames.length > 0);
  const xs = tracks.flatMap((track) => track.frames.map((frame) => frame.timestamp_s));
  const datasets = tracks.map((track, index) => {
    const withHeatmap = new Set(track.heatmaps.map((heatmap) => heatmap.frame_index));
    return {
      label: `Face ${track.track_id}`,
      trackId: track.track_id,
      data: track.frames.map((frame) => ({ x: frame.timestamp_s, y: frame.score, frameIndex: frame.frame_index })),
      borderColor: trackColour(index),
      backgroundColor: trackColour(index),
      pointRadius: track.frames.map((frame) => (withHeatmap.has(frame.frame_index) ? 6 : 3)),
      pointHoverRadius: 8,
      tension: 0.2,
    };
  });
  if (xs.length > 0) {
    datasets.push(thresholdLine("Fake threshold", result.thresholds.fake, xs, "#c62828"));
    datasets.push(thresholdLine("Uncertain from", result.thresholds.uncertain_low, xs, "#b7791f"));
  }
  // eslint-disable-next-line no-undef
  return new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: { xAxisKey: "x", yAxisKey: "y" },
      scales: {
        x: { type: "linear", title: { display: true, text: "Time in the video (s)" } },
        y: { min: 0, max: 1, title: { display: true, text: "P(fake) of the face" } },
      },
      interaction: { mode: "nearest", intersect: false },
      plugins: {
        legend: { labels: { filter: () => true } },
        tooltip: {
          filter: (item) => !item.dataset.isThreshold,
          callbacks: {
            label: (item) => `${item.dataset.label}, frame ${item.raw.frameIndex}: ${item.parsed.y.toFixed(3)}`,
          },
        },
      },
      onClick: (event, _elements, chart) => {
        const nearest = nearestPoint(chart, event.x, event.y);
        if (nearest) onSelect(nearest.trackId, nearest.frameIndex);
      },
    },
  });
}

/** The track point nearest to a click (pixels), ignoring the threshold lines. */
export function nearestPoint(chart, x, y) {
  let best = null;
  chart.data.datasets.forEach((dataset, datasetIndex) => {
    if (dataset.isThreshold || !chart.isDatasetVisible(datasetIndex)) return;
    chart.getDatasetMeta(datasetIndex).data.forEach((point, index) => {
      const distance = Math.hypot(point.x - x, point.y - y);
      if (!best || distance < best.distance) {
        best = { distance, trackId: dataset.trackId, frameIndex: dataset.data[index].frameIndex };
      }
    });
  });
  return best;
}
