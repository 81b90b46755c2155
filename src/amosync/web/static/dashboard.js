// amosync dashboard: keeps every sync progress block current by polling its account's
// progress endpoint (cookie-authenticated JSON). Loaded from /static (the CSP allows no
// inline script); it only ever sets textContent, never HTML.
(function () {
  "use strict";

  var ACTIVE_MS = 1000; // while a sync runs
  var IDLE_MS = 5000; // otherwise, to notice a sync started elsewhere (widget, API)
  var ACTIVE = { queued: true, running: true };

  // The page's language and the strings this script writes, translated by the server.
  var LANG = document.documentElement.lang || "en";
  var MESSAGES = {};
  try {
    MESSAGES = JSON.parse(document.body.getAttribute("data-messages") || "{}");
  } catch (ignored) {
    MESSAGES = {};
  }

  function say(key, values) {
    var text = MESSAGES[key] || key;
    Object.keys(values || {}).forEach(function (name) {
      text = text.split("%(" + name + ")s").join(String(values[name]));
    });
    return text;
  }

  function number(value) {
    return value === null || value === undefined ? "—" : Number(value).toLocaleString(LANG);
  }

  function when(value) {
    if (!value) return "—";
    var date = new Date(value);
    if (isNaN(date.getTime())) return "—";
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
  }

  function each(root, selector, apply) {
    var found = root.querySelectorAll(selector);
    for (var i = 0; i < found.length; i++) apply(found[i]);
  }

  function setField(root, name, text) {
    each(root, '[data-field="' + name + '"]', function (el) {
      el.textContent = text;
    });
  }

  function showRun(block, run) {
    var hasRun = Boolean(run);
    each(block, '[data-role="no-run"]', function (el) { el.hidden = hasRun; });
    each(block, '[data-role="run"]', function (el) { el.hidden = !hasRun; });
    if (!run) return;

    each(block, '[data-field="status"]', function (el) {
      el.textContent = say(run.status);
      el.className = "badge badge--" + run.status;
    });
    setField(block, "percent", run.percent === null ? "" : run.percent + "%");
    setField(block, "run-id", say("run", { id: run.run_id }));
    each(block, '[data-field="bar"]', function (bar) {
      bar.setAttribute("data-status", run.status);
      if (run.bar === null) {
        bar.removeAttribute("value"); // indeterminate: a run whose total is not known yet
      } else {
        bar.value = run.bar;
      }
      bar.textContent = run.bar === null ? "" : run.bar + "%";
    });
    setField(block, "fetched", number(run.fetched));
    setField(block, "synced", number(run.synced));
    setField(block, "unsynced", number(run.unsynced));
    setField(block, "failed", number(run.failed));
    setField(block, "rate", run.rate === null ? "—" : say("per_second", { rate: number(run.rate) }));
    setField(block, "started_at", when(run.started_at));
    setField(block, "finished_at", when(run.finished_at));
    each(block, '[data-field="error"]', function (el) {
      el.textContent = run.error || "";
      el.hidden = !run.error;
    });
  }

  function showCounts(block, contacts) {
    var scope = block.closest("[data-account-id]");
    if (!scope || !contacts) return;
    Object.keys(contacts).forEach(function (state) {
      each(scope, '[data-count="' + state + '"]', function (el) {
        el.textContent = number(contacts[state]);
      });
      // An empty list rendered before these contacts arrived.
      each(scope, '[data-empty-state="' + state + '"]', function (el) {
        if (contacts[state] > 0) {
          el.textContent = say("new_" + state, { n: number(contacts[state]) });
        }
      });
    });
  }

  function sessionEnded() {
    each(document, '[data-role="session-expired"]', function (el) { el.hidden = false; });
  }

  function watch(block) {
    var url = block.getAttribute("data-progress-url");
    var wasActive = block.getAttribute("data-active") === "true";
    var lastRun = null;

    function schedule(active) {
      window.setTimeout(tick, active ? ACTIVE_MS : IDLE_MS);
    }

    function tick() {
      if (document.hidden) {
        schedule(wasActive);
        return;
      }
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401) {
            sessionEnded();
            return null; // stop polling: every further call would be refused too
          }
          if (!response.ok) throw new Error("progress: HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          if (data === null) return;
          var run = data.run;
          var active = Boolean(run && ACTIVE[run.status]);
          showRun(block, run);
          showCounts(block, data.contacts);
          block.setAttribute("data-active", active ? "true" : "false");
          // A run that finished (or a newer run that already finished) while we watched.
          if (run && !active && (wasActive || (lastRun !== null && lastRun !== run.run_id))) {
            each(block, '[data-role="finished"]', function (el) { el.hidden = false; });
            // "Started" or "already running" notices speak of a run that is over now,
            // and the reload must not bring them back.
            each(document, "[data-notice]", function (el) { el.hidden = true; });
            each(block, '[data-role="finished"] a', function (link) {
              var target = new URL(window.location.href);
              target.searchParams.delete("notice");
              link.href = target.toString();
            });
          }
          wasActive = active;
          lastRun = run ? run.run_id : null;
          schedule(active);
        })
        .catch(function () {
          schedule(false); // the service is restarting or the network blinked: retry slowly
        });
    }

    schedule(wasActive);
  }

  function start() {
    each(document, "[data-progress-url]", watch);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
