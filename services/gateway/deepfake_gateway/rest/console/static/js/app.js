// The console's entry point: sign-in with an API key (session storage only) and hash routing between views:
// #/new (analyse media), #/jobs (the list), #/jobs/{id} (one job). Everything goes through the public /v1 API.

import { checkKey, forgetKey, onUnauthorized, storedKey, storeKey } from "./api.js";
import { byId, notify, setError, show } from "./dom.js";
import { loadJobs, setUpJobList } from "./job-list.js";
import { leaveJob, openJob, setUpJobView } from "./job-view.js";
import { setUpUpload } from "./upload.js";

const VIEWS = ["signin", "new", "job", "jobs"];
let pendingJob = null; // the 202 document of the job just submitted, shown before the first poll

function showView(name) {
  for (const view of VIEWS) show(byId(`view-${view}`), view === name);
  show(byId("main-nav"), name !== "signin");
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function currentJobId() {
  const match = location.hash.match(/^#\/jobs\/([\w-]+)$/);
  return match ? match[1] : null;
}

function focusMain() {
  byId("main").focus({ preventScroll: true });
}

async function route() {
  leaveJob();
  if (!storedKey()) {
    showView("signin");
    byId("api-key").focus();
    return;
  }
  const jobId = currentJobId();
  if (jobId) {
    showView("job");
    const initial = pendingJob;
    pendingJob = null;
    openJob(jobId, initial).catch((error) => setError(byId("job-error"), `${error.message} (${error.code})`));
  } else if (location.hash === "#/jobs") {
    showView("jobs");
    loadJobs();
  } else {
    showView("new");
  }
  focusMain();
}

function signOut(message = "") {
  forgetKey();
  leaveJob();
  notify("");
  setError(byId("signin-error"), message);
  if (location.hash !== "#/new") location.hash = "#/new";
  route();
}

function setUpSignIn() {
  byId("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = byId("api-key").value.trim();
    const error = byId("signin-error");
    if (!key) {
      setError(error, "Enter your API key.");
      return;
    }
    setError(error, "");
    try {
      await checkKey(key);
    } catch (problem) {
      const message = problem.status === 401
        ? "This API key was not accepted. Check that you pasted all of it; ask your administrator for a new one if it was revoked."
        : `The gateway could not check the key: ${problem.message} (${problem.code})`;
      setError(error, message);
      byId("api-key").select();
      return;
    }
    storeKey(key);
    byId("api-key").value = "";
    route();
  });
  byId("sign-out").addEventListener("click", () => signOut());
  onUnauthorized(() => signOut("Your API key is no longer accepted. Sign in again."));
}

function start() {
  setUpSignIn();
  setUpUpload((job) => {
    pendingJob = job;
    location.hash = `#/jobs/${job.id}`;
  });
  setUpJobView(currentJobId, () => {
    location.hash = "#/jobs";
  });
  setUpJobList();
  window.addEventListener("hashchange", route);
  route();
}

start();
