// A job's webhook delivery log (GET /v1/jobs/{id}/deliveries) and redelivery (POST .../deliveries/redeliver).

import { getDeliveries, redeliver } from "./api.js";
import { byId, h, notify, show } from "./dom.js";
import { dateTime, milliseconds } from "./format.js";

const REFRESH_AFTER_REDELIVERY_MS = 1000;
const REFRESHES_AFTER_REDELIVERY = 15;

export class DeliveriesPanel {
  constructor(job, isCurrent) {
    this.job = job;
    this.isCurrent = isCurrent; // false once the person left this job's view
    this.count = 0;
  }

  async load() {
    const panel = byId("deliveries-panel");
    show(panel);
    const summary = byId("deliveries-summary");
    const table = byId("deliveries-table");
    const hasCallback = Boolean(this.job.options?.callback_url);
    byId("redeliver").disabled = !hasCallback;
    if (!hasCallback) {
      summary.textContent = "This job has no webhook URL, so nothing is delivered.";
      show(table, false);
      return;
    }
    const log = await getDeliveries(this.job.id);
    if (!this.isCurrent()) return;
    this.count = log.deliveries.length;
    summary.textContent = log.event_id
      ? `Event ${log.event_id} (${log.event_type}) to ${this.job.options.callback_url}: ${log.deliveries.length} attempt(s).`
      : "The webhook is sent when the job finishes.";
    byId("redeliver").disabled = !log.event_id;
    show(table, log.deliveries.length > 0);
    table.tBodies[0].replaceChildren(...log.deliveries.map((attempt) => h("tr", { "data-outcome": attempt.outcome },
      h("td", {}, String(attempt.attempt)),
      h("td", {}, dateTime(attempt.at)),
      h("td", {}, attempt.outcome),
      h("td", {}, attempt.status_code ?? "—"),
      h("td", {}, milliseconds(attempt.duration_ms)),
      h("td", {}, attempt.error || (attempt.next_retry_at ? `retry at ${dateTime(attempt.next_retry_at)}` : "")))));
  }

  async redeliver() {
    const before = this.count;
    await redeliver(this.job.id);
    notify("Redelivery queued; the log updates when it is attempted.");
    for (let i = 0; i < REFRESHES_AFTER_REDELIVERY && this.isCurrent(); i += 1) {
      await new Promise((resolve) => setTimeout(resolve, REFRESH_AFTER_REDELIVERY_MS));
      await this.load();
      if (this.count > before) return;
    }
  }
}
