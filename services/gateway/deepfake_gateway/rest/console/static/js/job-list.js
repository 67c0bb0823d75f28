// The job list: status and page size from the API (GET /v1/jobs), verdict and dates filtering the page shown,
// cursor paging, and erase with a confirmation.

import { eraseJob, listJobs } from "./api.js";
import { byId, confirmAction, h, notify } from "./dom.js";
import { dateTime, statusLabel, verdictLabel } from "./format.js";

const state = { cursors: [null], page: 0, nextCursor: null };

function filters() {
  return {
    status: byId("filter-status").value,
    verdict: byId("filter-verdict").value,
    from: byId("filter-from").value,
    to: byId("filter-to").value,
    limit: Number(byId("filter-size").value),
  };
}

/** Verdict and creation date, applied to the jobs of one page (dates are the person's local days). */
export function matches(job, { verdict, from, to }) {
  if (verdict && job.verdict !== verdict) return false;
  const created = new Date(job.created_at);
  if (from && created < new Date(`${from}T00:00:00`)) return false;
  if (to && created > new Date(`${to}T23:59:59.999`)) return false;
  return true;
}

function row(job, reload) {
  const name = job.media.filename || job.media.url || "(upload)";
  return h("tr", { "data-job": job.id },
    h("td", { "data-label": "Created" }, dateTime(job.created_at)),
    h("td", { "data-label": "Media" }, h("a", { href: `#/jobs/${job.id}` }, name)),
    h("td", { "data-label": "Status" }, statusLabel(job.status)),
    h("td", { "data-label": "Verdict" }, job.verdict
      ? h("span", { class: `badge badge-small badge-${job.verdict}` }, verdictLabel(job.verdict)) : "—"),
    h("td", { "data-label": "Actions" },
      h("button", {
        type: "button", class: "danger erase", "aria-label": `Erase job ${name} (${job.id})`,
        onclick: async () => {
          const sure = await confirmAction(
            "Erase this job?",
            `${name} (${job.id}): its media, result and heatmaps are deleted for good; a running job is canceled.`,
          );
          if (!sure) return;
          try {
            await eraseJob(job.id);
            notify(`Job ${job.id} was erased.`);
          } catch (error) {
            notify(`The job could not be erased: ${error.message} (${error.code})`);
          }
          await reload();
        },
      }, "Erase")));
}

export async function loadJobs() {
  const chosen = filters();
  const summary = byId("jobs-summary");
  let page;
  try {
    page = await listJobs({ status: chosen.status, cursor: state.cursors[state.page], limit: chosen.limit });
  } catch (error) {
    summary.textContent = `The jobs could not be listed: ${error.message} (${error.code})`;
    return;
  }
  state.nextCursor = page.next_cursor;
  const shown = page.jobs.filter((job) => matches(job, chosen));
  byId("jobs-table").tBodies[0].replaceChildren(...shown.map((job) => row(job, loadJobs)));
  summary.textContent = `Page ${state.page + 1}: ${shown.length} of ${page.jobs.length} job(s) shown`
    + (page.next_cursor ? "; more on the next page." : ".");
  byId("page-previous").disabled = state.page === 0;
  byId("page-first").disabled = state.page === 0;
  byId("page-next").disabled = !page.next_cursor;
}

export function setUpJobList() {
  byId("jobs-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    Object.assign(state, { cursors: [null], page: 0 });
    loadJobs();
  });
  byId("page-next").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors = state.cursors.slice(0, state.page + 1).concat([state.nextCursor]);
    state.page += 1;
    loadJobs();
  });
  byId("page-previous").addEventListener("click", () => {
    state.page = Math.max(0, state.page - 1);
    loadJobs();
  });
  byId("page-first").addEventListener("click", () => {
    state.page = 0;
    loadJobs();
  });
}
