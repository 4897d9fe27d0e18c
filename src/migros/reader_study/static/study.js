"use strict";
// The reader's page. It knows a trial only as two image URLs and a number: which method made an image is on the
// server alone. An answer is sent the moment it is given; the page moves on only when the server replies that
// it is stored, so a lost request leaves the reader on the same pair, able to answer again.

// No answer before the pair has been on screen this long: a key pressed twice lands on the same pair while
// the first answer is on its way, and is ignored by the pending flag; this catches the second press when the
// reply comes back before it.
const MIN_VIEWING_MS = 200;

const byId = (id) => document.getElementById(id);

function message(text) {
  byId("message").textContent = text;
}

// ---- start page -------------------------------------------------------------------------------------------

function startPage() {
  const form = byId("register");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const response = await fetch("/api/readers", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ reader: byId("reader-id").value.trim() }),
      });
      const reply = await response.json();
      if (!response.ok) {
        message(reply.error);
        return;
      }
      location.assign(reply.link);
    } catch {
      message("The study server did not answer. Is it running?");
    }
  });
}

// ---- study page -------------------------------------------------------------------------------------------

const api = `/api/r/${location.pathname.split("/")[2]}`;
const SECTIONS = ["calibration", "trial", "paused", "done"];
const page = {
  phase: "loading", // calibration | trial | paused | done
  trial: null, // {trial, left, right}
  ready: false, // both images of the trial have loaded
  pending: false, // an answer is on its way
  clockStartedAt: null, // performance.now() when the clock last started; null while it stands
  viewedMs: 0, // viewing time of this trial before the clock last stopped
  answeredMs: null, // the viewing time when the reader first answered this trial (kept for a retry)
};

function show(section) {
  for (const name of SECTIONS) byId(name).hidden = name !== section;
}

function setButtons(enabled) {
  for (const id of ["left", "right"]) byId(id).disabled = !enabled;
}

function startClock() {
  if (page.phase === "trial" && page.ready && page.clockStartedAt === null) page.clockStartedAt = performance.now();
}

function stopClock() {
  if (page.clockStartedAt !== null) {
    page.viewedMs += performance.now() - page.clockStartedAt;
    page.clockStartedAt = null;
  }
}

function viewingMs() {
  return page.viewedMs + (page.clockStartedAt === null ? 0 : performance.now() - page.clockStartedAt);
}

function showCalibration(state) {
  for (const [name, label] of [["healthy", "real healthy slice"], ["tumour", "real slice with a tumour"]]) {
    const grid = byId(`calibration-${name}`);
    grid.replaceChildren(...state.calibration[name].map((url, index) => {
      const image = document.createElement("img");
      image.src = url;
      image.alt = `${label} ${index + 1}`;
      return image;
    }));
  }
  page.phase = "calibration";
  show("calibration");
  byId("start").onclick = () => showState(state);
}

function showState(state) {
  byId("question").textContent = state.question;
  const current = state.trial ? state.answered + 1 : state.total;
  byId("progress").textContent = `${current} / ${state.total}`;
  if (!state.trial) {
    page.phase = "done";
    show("done");
    return;
  }
  Object.assign(page, { phase: "trial", trial: state.trial, ready: false, clockStartedAt: null, viewedMs: 0,
                        answeredMs: null });
  setButtons(false);
  const trial = state.trial;
  let loaded = 0;
  for (const side of ["left", "right"]) {
    const image = byId(`${side}-image`);
    image.onload = () => {
      loaded += 1;
      if (loaded === 2 && page.trial === trial) {
        page.ready = true;
        setButtons(true);
        startClock();
      }
    };
    image.onerror = () => message("An image did not load. Reload the page to go on where you are.");
    image.src = trial[side];
  }
  show("trial");
}

async function loadState() {
  const response = await fetch(`${api}/state`);
  if (!response.ok) throw new Error(`state: HTTP ${response.status}`);
  return response.json();
}

async function answer(side) {
  if (page.phase !== "trial" || page.pending || !page.ready || viewingMs() < MIN_VIEWING_MS) return;
  page.pending = true;
  setButtons(false);
  stopClock();
  page.answeredMs ??= Math.round(page.viewedMs);
  try {
    const response = await fetch(`${api}/answer`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ trial: page.trial.trial, side, response_ms: page.answeredMs }),
    });
    // 409: this trial is not the next one any more (answered in another browser): show where the reader is
    const state = response.status === 409 ? await loadState() : await response.json();
    if (!response.ok && response.status !== 409) throw new Error(state.error);
    page.pending = false;
    message("");
    showState(state);
  } catch {
    page.pending = false;
    message("Your answer was not saved (no connection to the study server). Answer again to retry.");
    setButtons(true);
    startClock();
  }
}

function togglePause() {
  if (page.phase === "trial" && !page.pending) {
    stopClock();
    page.phase = "paused";
    show("paused");
  } else if (page.phase === "paused") {
    page.phase = "trial";
    show("trial");
    startClock();
  }
}

function studyPage() {
  byId("left").onclick = () => answer("left");
  byId("right").onclick = () => answer("right");
  byId("pause").onclick = togglePause;
  byId("resume").onclick = togglePause;
  document.addEventListener("keydown", (event) => {
    if (event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
    const actions = {
      calibration: { Enter: () => byId("start").click() },
      trial: { ArrowLeft: () => answer("left"), 1: () => answer("left"), ArrowRight: () => answer("right"),
               2: () => answer("right"), p: togglePause, P: togglePause, " ": togglePause },
      paused: { p: togglePause, P: togglePause, " ": togglePause },
    }[page.phase] ?? {};
    if (event.key in actions) {
      event.preventDefault();
      actions[event.key]();
    }
  });
  // a hidden tab is a pause: the clock must not run while the reader is elsewhere
  document.addEventListener("visibilitychange", () => {
    if (document.hidden && page.phase === "trial") togglePause();
  });
  loadState().then(
    (state) => {
      byId("reader").textContent = state.reader;
      if (state.answered === 0 && state.trial) showCalibration(state);
      else showState(state);
    },
    () => message("The study server did not answer. Reload the page when it is running again."),
  );
}

if (byId("register")) startPage();
else studyPage();
