// The public REST API (/v1), the only thing the console talks to: fetch for documents, XMLHttpRequest for
// uploads (its upload events give progress), problem+json errors turned into ApiError with the stable code.

const KEY_STORAGE = "deepfake-console-api-key";

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

let unauthorizedHandler = () => {};

/** Called when the API answers 401 to a stored key (revoked, or the tenant was removed). */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

async function problemOf(response) {
  let code = `http_${response.status}`;
  let detail = `The gateway answered HTTP ${response.status}.`;
  try {
    const problem = await response.json();
    code = problem.code || code;
    detail = problem.detail || problem.title || detail;
  } catch {
    // not JSON (a proxy's page): keep the generic message
  }
  return new ApiError(response.status, code, detail);
}

/** One API call with the given key (default: the stored one); JSON in and out. */
export async function request(method, path, { body, key, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${key ?? storedKey() ?? ""}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "network_error", "The gateway could not be reached. Check your connection and retry.");
  }
  if (!response.ok) {
    const error = await problemOf(response);
    if (error.status === 401 && key === undefined) unauthorizedHandler(error);
    throw error;
  }
  return raw ? response : response.json();
}

/** Check a key before keeping it: the cheapest authenticated call. */
export async function checkKey(key) {
  await request("GET", "/v1/jobs?limit=1", { key });
}

export const getJob = (id) => request("GET", `/v1/jobs/${encodeURIComponent(id)}`);
export const getResult = (id) => request("GET", `/v1/jobs/${encodeURIComponent(id)}/result`);
export const eraseJob = (id) => request("DELETE", `/v1/jobs/${encodeURIComponent(id)}`);
export const getDeliveries = (id) => request("GET", `/v1/jobs/${encodeURIComponent(id)}/deliveries`);
export const redeliver = (id) => request("POST", `/v1/jobs/${encodeURIComponent(id)}/deliveries/redeliver`);
export const submitUrl = (options) => request("POST", "/v1/jobs", { body: options });

export function listJobs({ status, cursor, limit }) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (status) query.set("status", status);
  if (cursor) query.set("cursor", cursor);
  return request("GET", `/v1/jobs?${query}`);
}

/** A heatmap PNG (GET /v1/jobs/{id}/tracks/{track}/heatmaps/{frame}) as a blob: URL the page may show. */
export async function heatmapUrl(jobId, trackId, frameIndex, kind) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}/tracks/${trackId}/heatmaps/${frameIndex}?kind=${kind}`;
  const response = await request("GET", path, { raw: true });
  return URL.createObjectURL(await response.blob());
}

/**
 * POST /v1/jobs with the file as multipart; `onProgress(loaded, total)` follows the upload.
 * Returns { promise, abort }: the promise resolves to the job document (202).
 */
export function uploadMedia(file, fields, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) {
      if (value !== "" && value !== undefined && value !== null) form.append(name, value);
    }
    form.append("file", file, file.name);
    xhr.open("POST", "/v1/jobs");
    xhr.setRequestHeader("Authorization", `Bearer ${storedKey() ?? ""}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    });
    xhr.upload.addEventListener("load", () => onProgress(file.size, file.size));
    xhr.addEventListener("load", () => {
      const document = xhr.response || {};
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(document);
        return;
      }
      const error = new ApiError(
        xhr.status, document.code || `http_${xhr.status}`, document.detail || `The upload failed (HTTP ${xhr.status}).`,
      );
      if (xhr.status === 401) unauthorizedHandler(error);
      reject(error);
    });
    xhr.addEventListener("error", () => {
      reject(new ApiError(0, "network_error", "The upload was interrupted. Check your connection and retry."));
    });
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "The upload was stopped.")));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
