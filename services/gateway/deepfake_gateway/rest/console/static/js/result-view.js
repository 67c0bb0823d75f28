// The result of a finished job: the verdict badge with its confidence and what it means, the per-frame chart
// with the frame viewer, the heatmap gallery per face, media facts, sampling, timings, model, JSON download.

import { heatmapUrl } from "./api.js";
import { h } from "./dom.js";
import { bytes, fixed, milliseconds, percent, stageLabel, verdictLabel } from "./format.js";
import { drawScoreChart, trackColour } from "./score-chart.js";

/** What the verdict means, in one sentence, from the result's own thresholds. */
export function verdictMeaning(result) {
  const { fake, uncertain_low: low } = result.thresholds;
  const score = fixed(result.score, 3);
  switch (result.verdict) {
    case "fake":
      return `The most suspicious face scores ${score} (probability of manipulation), at or above the fake threshold ${fixed(fake)}.`;
    case "real":
      return `Every face scores below ${fixed(low)}; the most suspicious one scores ${score}.`;
    case "uncertain":
      return `The most suspicious face scores ${score}, between ${fixed(low)} and the fake threshold ${fixed(fake)}: look at it yourself.`;
    default:
      return "No face was found in the sampled frames, so nothing was judged. This is not a \"Real\" verdict.";
  }
}

function confidenceParagraph(result) {
  if (result.confidence === null || result.confidence === undefined) {
    return h("p", { class: "confidence", id: "confidence" }, h("strong", {}, "No confidence"), ": no face was judged.");
  }
  return h("p", { class: "confidence", id: "confidence" },
    h("strong", {}, `Confidence ${percent(result.confidence)}`),
    ": how far the score is from the boundary of this verdict, calibrated on held-out media "
      + "(0 % sits on the boundary, 100 % is as far from it as a score can be).");
}

function factsList(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, value]) => value !== null && value !== undefined)
    .flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, String(value))]));
}

function mediaFacts(media) {
  return factsList([
    ["Type", media.type],
    ["Format", media.format],
    ["Size", bytes(media.size_bytes)],
    ["Dimensions", `${media.width} × ${media.height}`],
    ["Duration", media.duration_s != null ? `${fixed(media.duration_s)} s` : null],
    ["Frame rate", media.fps != null ? `${fixed(media.fps, 1)} fps` : null],
    ["Frames in file", media.total_frames],
    ["Frames sampled", media.frames_sampled],
    ["SHA-256", media.sha256],
  ]);
}

function timingsTable(result, job) {
  const rows = [
    ...Object.entries(result.timings_ms).map(([stage, ms]) => ["Detection core", stage, ms]),
    ...Object.entries(job.stage_timings_ms || {}).map(([stage, ms]) => ["Service stage", stage, ms]),
  ];
  return h("div", { class: "table-wrap" }, h("table", { class: "timings" },
    h("caption", { class: "sr-only" }, "Time per stage"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Where"), h("th", { scope: "col" }, "Stage"),
      h("th", { scope: "col", class: "number" }, "Time"))),
    h("tbody", {}, rows.map(([where, stage, ms]) => h("tr", {}, h("td", {}, where), h("td", {}, stageLabel(stage)),
      h("td", { class: "number" }, milliseconds(ms)))))));
}

function downloadButton(result) {
  return h("button", {
    type: "button",
    id: "download-json",
    onclick: () => {
      const blob = new Blob([JSON.stringify(result, null, 2)], { type: "application/json" });
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: `deepfake-result-${result.job_id}.json` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    },
  }, "Download the JSON result");
}

/** Renders results; owns the blob: URLs of heatmaps and the chart, released by dispose(). */
export class ResultView {
  constructor(panel, job, result) {
    this.panel = panel;
    this.job = job;
    this.result = result;
    this.blobUrls = new Map();
    this.chart = null;
  }

  dispose() {
    this.chart?.destroy();
    for (const url of this.blobUrls.values()) URL.revokeObjectURL(url);
    this.blobUrls.clear();
  }

  async heatmap(trackId, frameIndex, kind) {
    const key = `${trackId}/${frameIndex}/${kind}`;
    if (!this.blobUrls.has(key)) {
      this.blobUrls.set(key, await heatmapUrl(this.job.id, trackId, frameIndex, kind));
    }
    return this.blobUrls.get(key);
  }

  render() {
    const { result, job } = this;
    const isVideo = result.media.type === "video";
    const framed = result.tracks.some((track) => track.frames.length > 0);
    const overlays = result.tracks.some((track) => track.heatmaps.some((heatmap) => heatmap.kind === "frame"));
    const sections = [
      h("section", { class: "card verdict", "aria-labelledby": "verdict-title" },
        h("h2", { id: "verdict-title", class: "sr-only" }, "Verdict"),
        h("p", { class: `badge badge-${result.verdict}`, id: "verdict-badge", "data-verdict": result.verdict },
          verdictLabel(result.verdict)),
        h("div", {},
          confidenceParagraph(result),
          h("p", { id: "verdict-meaning" }, verdictMeaning(result)),
          result.model.trained ? null
            : h("p", { class: "warning" }, "This model is untrained: its scores are placeholders and mean nothing."),
          h("details", { class: "decision-rule" },
            h("summary", {}, "How the verdict is decided"),
            h("p", { class: "muted" }, result.decision_rule)))),
      isVideo && framed ? this.chartSection() : null,
      !isVideo && overlays ? this.photoSection() : null,
      result.tracks.length > 0 ? this.gallerySection() : null,
      h("section", { class: "card", "aria-labelledby": "facts-title" },
        h("h2", { id: "facts-title" }, "Media and analysis"),
        mediaFacts(result.media),
        factsList([
          ["Sampling used", result.sampling],
          ["Model", `${result.model.name} ${result.model.version}${result.model.trained ? "" : " (untrained)"}`],
          ["Model input", `${result.model.input_size} px, sequences of ${result.model.sequence_length}`],
          ["Thresholds", `fake ≥ ${fixed(result.thresholds.fake)}, uncertain ≥ ${fixed(result.thresholds.uncertain_low)}`],
          ["Fusion", `${fixed(result.thresholds.cnn_weight)} frames + ${fixed(result.thresholds.lstm_weight)} sequence`],
          ["Cached result", result.cache_hit ? "yes (identical media analysed before)" : "no"],
        ]),
        h("h3", {}, "Time per stage"),
        timingsTable(result, job),
        downloadButton(result)),
    ];
    this.panel.replaceChildren(...sections.filter(Boolean));
    if (isVideo && framed) {
      this.chart = drawScoreChart(this.panel.querySelector("#score-chart"), result,
        (trackId, frameIndex) => this.showFrame(trackId, frameIndex));
    }
    if (!isVideo && overlays) {
      const suspicious = result.tracks.reduce((best, track) => (track.score > best.score ? track : best));
      const first = suspicious.heatmaps.find((heatmap) => heatmap.kind === "frame");
      if (first) this.showFrame(suspicious.track_id, first.frame_index);
    }
    this.loadGallery();
  }

  /** Buttons for the frames that have a heatmap, per face: the keyboard's way to what a chart click shows. */
  frameChips() {
    return h("ul", { class: "frame-list", "aria-label": "Frames with a heatmap" }, this.result.tracks.map((track, index) =>
      h("li", {},
        h("span", { class: "swatch", "data-colour": index, "aria-hidden": "true" }),
        `Face ${track.track_id}: `,
        track.heatmaps.filter((heatmap) => heatmap.kind === "frame").map((heatmap) => h("button", {
          type: "button", class: "chip", "data-track": track.track_id, "data-frame": heatmap.frame_index,
          onclick: () => this.showFrame(track.track_id, heatmap.frame_index),
        }, `frame ${heatmap.frame_index} (${fixed(heatmap.score)})`)))));
  }

  frameViewer() {
    return h("figure", { id: "frame-viewer", class: "frame-viewer", hidden: true },
      h("div", { class: "frame-images" },
        h("img", { id: "frame-image", alt: "" }),
        h("img", { id: "frame-face", alt: "" })),
      h("figcaption", { id: "frame-caption", "aria-live": "polite" }));
  }

  chartSection() {
    return h("section", { class: "card", "aria-labelledby": "chart-title" },
      h("h2", { id: "chart-title" }, "Score of each sampled frame"),
      h("p", { class: "help" }, "Click a point to see that frame with its Grad-CAM heatmap. Larger points have one."),
      h("div", { class: "chart-box" }, h("canvas", {
        id: "score-chart", role: "img",
        "aria-label": "Line chart of the probability of manipulation of each sampled frame, one line per face. "
          + "The frames with heatmaps are listed below it.",
      })),
      this.frameChips(),
      this.frameViewer());
  }

  photoSection() {
    return h("section", { class: "card", "aria-labelledby": "photo-title" },
      h("h2", { id: "photo-title" }, "The photo with its heatmaps"),
      h("p", { class: "help" }, "Choose a face to see the Grad-CAM heatmap over the photo."),
      this.frameChips(),
      this.frameViewer());
  }

  /** Show a frame's Grad-CAM overlay; a frame without one shows the nearest frame of the track that has one. */
  async showFrame(trackId, frameIndex) {
    const track = this.result.tracks.find((candidate) => candidate.track_id === trackId);
    const viewer = this.panel.querySelector("#frame-viewer");
    const caption = this.panel.querySelector("#frame-caption");
    const frames = track ? track.heatmaps.filter((heatmap) => heatmap.kind === "frame") : [];
    if (!track || frames.length === 0) {
      viewer.hidden = false;
      caption.textContent = `Face ${trackId} has no heatmaps (explain was off, or no frame qualified).`;
      return;
    }
    const chosen = frames.reduce((best, heatmap) =>
      Math.abs(heatmap.frame_index - frameIndex) < Math.abs(best.frame_index - frameIndex) ? heatmap : best);
    const frame = track.frames.find((candidate) => candidate.frame_index === chosen.frame_index);
    const clicked = track.frames.find((candidate) => candidate.frame_index === frameIndex);
    const note = chosen.frame_index === frameIndex ? ""
      : ` Frame ${frameIndex} (score ${fixed(clicked?.score)}) has no heatmap: heatmaps are drawn for the `
        + "highest-scoring frames of each face; this is the nearest one.";
    const image = this.panel.querySelector("#frame-image");
    const face = this.panel.querySelector("#frame-face");
    try {
      image.src = await this.heatmap(trackId, chosen.frame_index, "frame");
      image.alt = `Frame ${chosen.frame_index} with the Grad-CAM heatmap of face ${trackId} overlaid`;
      const hasFace = track.heatmaps.some((h2) => h2.kind === "face" && h2.frame_index === chosen.frame_index);
      face.hidden = !hasFace;
      if (hasFace) {
        face.src = await this.heatmap(trackId, chosen.frame_index, "face");
        face.alt = `Aligned face ${trackId} at frame ${chosen.frame_index} with its heatmap`;
      }
      viewer.hidden = false;
      viewer.dataset.track = String(trackId);
      viewer.dataset.frame = String(chosen.frame_index);
      caption.textContent = `Face ${trackId}, frame ${chosen.frame_index}`
        + `${frame && this.result.media.type === "video" ? ` at ${fixed(frame.timestamp_s)} s` : ""}`
        + `: P(fake) ${fixed(chosen.score, 3)}.${note}`;
    } catch (error) {
      viewer.hidden = false;
      caption.textContent = `The heatmap could not be loaded: ${error.message}`;
    }
  }

  gallerySection() {
    return h("section", { class: "card", "aria-labelledby": "gallery-title" },
      h("h2", { id: "gallery-title" }, "Faces and their heatmaps"),
      this.result.tracks.map((track, index) => h("div", { class: "face-group" },
        h("h3", {},
          h("span", { class: "swatch", "data-colour": index, "aria-hidden": "true" }),
          `Face ${track.track_id}: `,
          h("span", { class: `badge badge-small badge-${track.verdict}` }, verdictLabel(track.verdict)),
          ` score ${fixed(track.score, 3)}`),
        h("p", { class: "muted" }, `Frames ${fixed(track.frame_score, 3)}`
          + (track.sequence_score != null ? `, sequence ${fixed(track.sequence_score, 3)}` : ", no full sequence")
          + `; ${track.frames.length} sampled frame${track.frames.length === 1 ? "" : "s"}.`),
        track.heatmaps.some((heatmap) => heatmap.kind === "face")
          ? h("ul", { class: "gallery" }, track.heatmaps.filter((heatmap) => heatmap.kind === "face").map((heatmap) =>
            h("li", {}, h("figure", {},
              h("img", {
                class: "gallery-image", alt: `Face ${track.track_id} at frame ${heatmap.frame_index} with its heatmap`,
                "data-track": track.track_id, "data-frame": heatmap.frame_index, "data-kind": "face",
              }),
              h("figcaption", {}, `frame ${heatmap.frame_index} · ${fixed(heatmap.score, 3)}`)))))
          : h("p", { class: "muted" }, "No heatmaps for this face."))));
  }

  async loadGallery() {
    for (const image of this.panel.querySelectorAll("img.gallery-image")) {
      try {
        image.src = await this.heatmap(Number(image.dataset.track), Number(image.dataset.frame), image.dataset.kind);
      } catch (error) {
        image.alt = `The heatmap could not be loaded: ${error.message}`;
      }
    }
  }
}

export { trackColour };
