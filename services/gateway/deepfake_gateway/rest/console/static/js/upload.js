// The "Analyse media" view: drag and drop or file picker (multipart upload with progress), or a media URL.

import { submitUrl, uploadMedia } from "./api.js";
import { byId, setError, show } from "./dom.js";
import { bytes } from "./format.js";

let currentUpload = null;

function options() {
  return {
    callback_url: byId("callback-url").value.trim(),
    sampling: byId("sampling").value.trim(),
    explain: byId("explain").checked ? "true" : "false",
  };
}

function jsonOptions() {
  const { callback_url: callbackUrl, sampling, explain } = options();
  const body = { explain: explain === "true" };
  if (callbackUrl) body.callback_url = callbackUrl;
  if (sampling) body.sampling = sampling;
  return body;
}

function showProgress(name, loaded, total) {
  const share = total > 0 ? Math.min(100, Math.round((loaded / total) * 100)) : 0;
  byId("upload-progress").value = share;
  byId("upload-label").textContent = `Uploading ${name}: ${share} % (${bytes(loaded)} of ${bytes(total)})`;
}

async function startUpload(file, onSubmitted) {
  if (!file || currentUpload) return;
  setError(byId("new-error"), "");
  show(byId("upload-panel"));
  showProgress(file.name, 0, file.size);
  performance.mark("console-upload-start");
  currentUpload = uploadMedia(file, options(), (loaded, total) => showProgress(file.name, loaded, total));
  try {
    const job = await currentUpload.promise;
    byId("upload-label").textContent = `Uploaded ${file.name}.`;
    onSubmitted(job);
  } catch (error) {
    setError(byId("new-error"), `${error.message} (${error.code})`);
  } finally {
    currentUpload = null;
    show(byId("upload-panel"), false);
    byId("file-input").value = "";
  }
}

/** Wire the view once; `onSubmitted(job)` receives the 202 job document. */
export function setUpUpload(onSubmitted) {
  const zone = byId("dropzone");
  const input = byId("file-input");
  input.addEventListener("change", () => startUpload(input.files[0], onSubmitted));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) startUpload(file, onSubmitted);
  });
  byId("upload-abort").addEventListener("click", () => currentUpload?.abort());
  byId("url-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const url = byId("media-url").value.trim();
    if (!url) {
      setError(byId("new-error"), "Enter the http(s) URL of a photo or a video.");
      return;
    }
    setError(byId("new-error"), "");
    try {
      onSubmitted(await submitUrl({ media_url: url, ...jsonOptions() }));
      byId("media-url").value = "";
    } catch (error) {
      setError(byId("new-error"), `${error.message} (${error.code})`);
    }
  });
}
