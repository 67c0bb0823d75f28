// Formatting of numbers, sizes, times and the names the API uses, for people.

export const VERDICT_LABELS = { real: "Real", fake: "Fake", uncertain: "Uncertain", no_face: "No face" };
export const STATUS_LABELS = {
  queued: "Queued", processing: "Processing", succeeded: "Succeeded", failed: "Failed", canceled: "Canceled",
};

export function verdictLabel(verdict) {
  return VERDICT_LABELS[verdict] || verdict || "—";
}

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

export function fixed(value, digits = 2) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

export function percent(value) {
  return value === null || value === undefined ? "—" : `${Math.round(Number(value) * 100)} %`;
}

export function bytes(size) {
  if (size === null || size === undefined) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let value = Number(size);
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function milliseconds(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function dateTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function stageLabel(stage) {
  return stage ? stage.replaceAll("_", " ") : "";
}
