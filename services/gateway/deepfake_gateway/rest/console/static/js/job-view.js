// One job: live progress from the job's own status, stage and progress fields until it ends, cancel, then
// its result (or its error) and its webhook delivery log.

import { eraseJob, getJob, getResult } from "./api.js";
import { DeliveriesPanel } from "./deliveries.js";
import { byId, confirmAction, notify, setError, show } from "./dom.js";
import { dateTime, stageLabel, statusLabel } from "./format.js";
import { ResultView } from "./result-view.js";

const POLL_INTERVAL_MS = 1000;
const BACKOFF_MS = 5000;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
// Passing troubles while polling: keep following the job instead of giving up on it.
const TRANSIENT = new Set(["rate_limited", "not_ready", "overloaded", "network_error"]);

let generation = 0; // bumped on every navigation: stale polls and renders stop
let resultView = null;
let deliveries = null;

function progressText(job) {
  if (job.status === "processing") {
    return `Processing: ${stageLabel(job.stage) || "starting"}, ${job.progress} %`;
  }
  return statusLabel(job.status);
}

function renderHeader(job) {
  const name = job.media.filename || job.media.url || job.id;
  byId("job-title").textContent = `Job: ${name}`;
  byId("job-meta").textContent = `${job.id} · submitted ${dateTime(job.created_at)}`
    + (job.model_version ? ` · model ${job.model_version}` : "");
}

function renderProgress(job) {
  const panel = byId("progress-panel");
  const running = !TERMINAL.has(job.status);
  show(panel, running);
  byId("job-progress").value = job.status === "processing" ? job.progress : 0;
  byId("progress-label").textContent = progressText(job);
  panel.dataset.status = job.status;
}

export function leaveJob() {
  generation += 1;
  resultView?.dispose();
  resultView = null;
  deliveries = null;
}

async function finish(job, mine) {
  renderProgress(job);
  if (job.status === "succeeded") {
    const result = await getResult(job.id);
    if (!mine()) return;
    resultView = new ResultView(byId("result-panel"), job, result);
    resultView.render();
    show(byId("result-panel"));
  } else if (job.status === "failed") {
    const error = job.error || {};
    setError(byId("job-error"), `The job failed (${error.code || "unknown"}): ${error.message || "no details"}`);
  } else {
    setError(byId("job-error"), "The job was canceled; it has no result.");
  }
  deliveries = new DeliveriesPanel(job, mine);
  await deliveries.load();
}

/** Open a job: `initial` is the document we already hold (the 202 answer), shown before the first poll. */
export async function openJob(jobId, initial = null) {
  leaveJob();
  const mine = ((token) => () => token === generation)(generation);
  show(byId("result-panel"), false);
  byId("result-panel").replaceChildren();
  show(byId("deliveries-panel"), false);
  setError(byId("job-error"), "");
  let job = initial && initial.id === jobId ? initial : await getJob(jobId);
  if (!mine()) return;
  renderHeader(job);
  renderProgress(job);
  let delay = POLL_INTERVAL_MS;
  while (!TERMINAL.has(job.status)) {
    await new Promise((resolve) => setTimeout(resolve, delay));
    if (!mine()) return;
    try {
      job = await getJob(jobId);
      delay = POLL_INTERVAL_MS;
      setError(byId("job-error"), "");
    } catch (error) {
      if (!TRANSIENT.has(error.code)) throw error;
      delay = BACKOFF_MS;
      setError(byId("job-error"), `Still following the job; the gateway said: ${error.message} Retrying shortly.`);
      continue;
    }
    if (!mine()) return;
    renderHeader(job);
    renderProgress(job);
  }
  await finish(job, mine);
}

export function setUpJobView(currentJobId, afterErase) {
  byId("job-cancel").addEventListener("click", async () => {
    const jobId = currentJobId();
    const sure = await confirmAction(
      "Cancel and erase this job?",
      "The analysis stops and the media, any result and heatmaps are erased for good.",
      "Cancel and erase",
    );
    if (!sure) return;
    try {
      await eraseJob(jobId);
      leaveJob();
      notify(`Job ${jobId} was canceled and erased.`);
      afterErase();
    } catch (error) {
      setError(byId("job-error"), `${error.message} (${error.code})`);
    }
  });
  byId("deliveries-refresh").addEventListener("click", () => deliveries?.load().catch(reportError));
  byId("redeliver").addEventListener("click", () => deliveries?.redeliver().catch(reportError));
}

function reportError(error) {
  setError(byId("job-error"), `${error.message} (${error.code})`);
}
