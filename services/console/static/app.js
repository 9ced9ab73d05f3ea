// leadstream console: the little the pages need beyond htmx. No build step, no inline scripts.
(function () {
  "use strict";

  // The user's time zone, for what the server renders (chart days, absolute times).
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && document.cookie.indexOf("ls_tz=" + encodeURIComponent(zone)) === -1) {
      document.cookie = "ls_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax";
    }
  } catch (e) { /* an old browser: times stay in UTC */ }

  var absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var relativeFmt = typeof Intl.RelativeTimeFormat === "function"
    ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" }) : null;

  // The services' clock: campaign time, which a demo runs `data-scale` times faster than the wall clock
  // (LEADSTREAM_CLOCK_SCALE). Each page and each live partial says what time it is there; in between, campaign
  // time moves `scale` times faster than the browser's own clock. Events are never shown as in the future.
  var scale = parseFloat(document.body ? document.body.getAttribute("data-scale") || "1" : "1");
  if (!(scale > 0)) { scale = 1; }
  var sync = { server: Date.parse(document.body ? document.body.getAttribute("data-now") || "" : ""), local: Date.now() };
  if (isNaN(sync.server)) { sync.server = Date.now(); }

  function serverNow() { return sync.server + (Date.now() - sync.local) * scale; }
  window.leadstreamNow = serverNow;  // read by the browser tests

  function relative(date) {
    var seconds = (date.getTime() - serverNow()) / 1000;
    var abs = Math.abs(seconds);
    if (abs < 45) { return "just now"; }
    var units = [["minute", 60], ["hour", 3600], ["day", 86400], ["month", 2592000]];
    var unit = units[0];
    for (var i = 0; i < units.length; i++) { if (abs >= units[i][1] * (i === 0 ? 1 : 0.9)) { unit = units[i]; } }
    var value = Math.round(seconds / unit[1]);
    return relativeFmt ? relativeFmt.format(value, unit[0]) : (Math.abs(value) + " " + unit[0] + "s");
  }

  function formatTimes(root) {
    var nodes = (root || document).querySelectorAll("time[data-rel]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) { continue; }
      el.textContent = relative(when);
      el.title = absolute.format(when);
    }
  }

  // -- the campaign chart ---------------------------------------------------------------------------
  var chart = null;
  var SERIES = [
    ["invites", "Invites", "#3b5bdb"],
    ["acceptances", "Acceptances", "#12b886"],
    ["messages", "Messages", "#7950f2"],
    ["emails", "Emails", "#f59f00"],
    ["replies", "Replies", "#e8590c"]
  ];

  function drawChart() {
    var data = document.getElementById("series-data");
    var canvas = document.getElementById("series-chart");
    if (!data || !canvas || typeof window.Chart !== "function") { return; }
    var series = JSON.parse(data.textContent);
    var day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
    var labels = series.days.map(function (d) { return day.format(new Date(d.day + "T00:00:00Z")); });
    var datasets = SERIES.map(function (s) {
      return {
        label: s[1], data: series.days.map(function (d) { return d[s[0]]; }),
        backgroundColor: s[2], borderColor: s[2], borderRadius: 3, maxBarThickness: 18
      };
    });
    if (chart) { chart.destroy(); }
    chart = new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } } },
        scales: {
          x: { grid: { display: false } },
          y: { beginAtZero: true, ticks: { precision: 0 }, grid: { color: "#eef0f3" } }
        }
      }
    });
  }

  function setLive(state) { document.body.setAttribute("data-live", state); }

  // -- forms: dialogs, one submit, counters, toggles ---------------------------------------------------
  function byId(id) { return id ? document.getElementById(id) : null; }

  function openDialog(button) {
    var dialog = byId(button.getAttribute("data-dialog"));
    if (!dialog || typeof dialog.showModal !== "function") { return; }
    var plan = button.getAttribute("data-upgrade-plan");
    var addon = button.getAttribute("data-upgrade-addon");
    if (plan !== null || addon !== null) {
      var fields = dialog.querySelectorAll("[data-upgrade-field]");
      for (var i = 0; i < fields.length; i++) {
        fields[i].value = fields[i].getAttribute("data-upgrade-field") === "plan" ? (plan || "") : (addon || "");
      }
      var result = dialog.querySelector("#upgrade-result");
      if (result) {
        var text = document.createElement("p");
        text.textContent = button.getAttribute("data-upgrade-label") || button.textContent;
        result.replaceChildren(text);
      }
    }
    dialog.showModal();
  }

  function countInto(field) {
    var box = byId(field.getAttribute("data-counter"));
    if (!box) { return; }
    var length = field.value.length;
    var shown = box.querySelector("[data-count]");
    if (shown) { shown.textContent = String(length); }
    var limit = parseInt(field.getAttribute("data-limit") || "", 10);
    if (!isNaN(limit)) {
      var over = length > limit;
      box.classList.toggle("over", over);
      field.setAttribute("aria-invalid", over ? "true" : "false");
      var save = byId(field.getAttribute("data-blocks"));
      if (save) { save.disabled = over; save.title = over ? "Shorten the text to " + limit + " characters first" : ""; }
    }
    var marks = box.querySelectorAll("[data-limit]");
    for (var i = 0; i < marks.length; i++) {
      var max = { invite: 200, video: 130, message: 500 }[marks[i].getAttribute("data-limit")];
      marks[i].classList.toggle("over", !!max && length > max);
    }
  }

  function applyToggles(root) {
    var scope = root || document;
    var sources = scope.querySelectorAll("[data-toggles]");
    var state = {};
    for (var i = 0; i < sources.length; i++) {
      var el = sources[i];
      var key = el.getAttribute("data-toggles");
      if (el.type === "radio") { if (el.checked) { state[key] = el.value; } }
      else if (el.type === "checkbox") { state[key] = el.checked ? "on" : (state[key] || ""); }
      else { state[key] = el.value; }
    }
    var targets = document.querySelectorAll("[data-when]");
    for (var j = 0; j < targets.length; j++) {
      var rule = targets[j].getAttribute("data-when").split(":");
      var allowed = (rule[1] || "").split(",");
      targets[j].hidden = allowed.indexOf(state[rule[0]] || "") === -1;
    }
  }

  var steps = [];
  var current = 0;
  function showStep(index) {
    if (!steps.length) { return; }
    current = Math.max(0, Math.min(steps.length - 1, index));
    for (var i = 0; i < steps.length; i++) {
      steps[i].hidden = i !== current;
      var tab = document.querySelector('[data-step-tab="' + steps[i].getAttribute("data-step") + '"]');
      if (tab) { tab.setAttribute("aria-current", i === current ? "step" : "false"); }
      // On a phone the stepper scrolls sideways: the current step's tab is kept in view (the 6th is off screen).
      if (tab && i === current) { revealTab(tab); }
    }
    // A review posts the step the user is on: a message above the steps (the name, the form's own) leaves them there.
    var at = document.querySelector("[data-current-step]");
    if (at) { at.value = steps[current].getAttribute("data-step"); }
    var status = document.querySelector("[data-step-status]");
    if (status) { status.textContent = "Step " + (current + 1) + " of " + steps.length; }
    var back = document.querySelector('[data-step-move="-1"]');
    var next = document.querySelector('[data-step-move="1"]');
    if (back) { back.disabled = current === 0; }
    if (next) { next.hidden = current === steps.length - 1; }
  }

  // -- the stepper's error marks --------------------------------------------------------------------------
  // The builder shows one step at a time, so a message at a closed step (a request of the builder that failed there,
  // the email step drawn again after an upgrade while the user is on the video step; a field error of a review
  // that opened another step) was seen by no one. Each tab says whether its step shows an error: its badge and the
  // words read with its name ([data-step-error], drawn by the server for the errors of a full POST), kept up to
  // date here as messages come and go; a step that newly has one while closed is said once in [data-step-alert]
  // (its own role="alert" is not read while the step is hidden). Clicking a marked tab opens the step at its
  // message.
  function stepTab(section) {
    return document.querySelector('[data-step-tab="' + section.getAttribute("data-step") + '"]');
  }
  function errorsShownAt(section) {
    // Every message of the step (.field-error: a field's, a partial's, a request's), except in a part the form
    // hides for the choices made (the CSV upload's once another audience is chosen): nothing would be seen there.
    var found = section.querySelectorAll(".field-error");
    var shown = [];
    for (var i = 0; i < found.length; i++) {
      var hidden = found[i].closest("[hidden]");
      if (!hidden || hidden === section) { shown.push(found[i]); }
    }
    return shown;
  }
  function messageOf(error) {
    // The message's own words, without its buttons ("Try again", an upgrade).
    var words = "";
    for (var i = 0; i < error.childNodes.length; i++) {
      if (error.childNodes[i].nodeType === Node.TEXT_NODE) { words += error.childNodes[i].data; }
    }
    return words.trim();
  }
  function revealTab(tab) {
    // On a phone the stepper scrolls sideways: a tab just marked, or just opened, is scrolled into it (the page
    // itself stays put: the stepper's own scrollLeft, never scrollIntoView).
    var bar = tab.closest(".stepper");
    if (!bar) { return; }
    var at = tab.getBoundingClientRect();
    var box = bar.getBoundingClientRect();
    if (at.left < box.left || at.right > box.right) { bar.scrollLeft += at.left - box.left - 8; }
  }
  // -- a field's message once the field is edited -----------------------------------------------------------
  // A review's message at a field (.field-error, and the aria-invalid of the fields it describes) says what was
  // refused in the value sent; once the user edits an input of that value it no longer describes what is there, so
  // it goes (and with it the step tab's mark, when the step shows no other message: markSteps follows the change).
  // Which inputs those are is said by the message itself, as the template drew it (data-cleared-by, macros.err):
  // "name" (any edit of an input called name) or "name:v1,v2" (an edit leaving it at one of those values; "name:"
  // is no value: a plan-required message goes only when its feature is switched off). The next review checks
  // everything again; a field the workflow check judges has its message sent again by the check, if it still fails.
  function clearError(error) {
    var described = document.querySelectorAll('[aria-describedby~="' + error.id + '"]');
    for (var i = 0; i < described.length; i++) {
      described[i].removeAttribute("aria-invalid");
      described[i].removeAttribute("aria-describedby");
    }
    error.remove();
  }
  function editedValue(el) {
    // What the input now holds as the form would send it: a box or a radio not ticked sends nothing.
    if (el.type === "checkbox" || el.type === "radio") { return el.checked ? el.value : ""; }
    return el.value;
  }
  function clearedBy(error, name, value) {
    var rules = (error.getAttribute("data-cleared-by") || "").split(/\s+/);
    for (var i = 0; i < rules.length; i++) {
      var at = rules[i].indexOf(":");
      if ((at === -1 ? rules[i] : rules[i].slice(0, at)) !== name) { continue; }
      if (at === -1 || rules[i].slice(at + 1).split(",").indexOf(value) !== -1) { return true; }
    }
    return false;
  }
  function editedField(ev) {
    var el = ev.target;
    var form = el instanceof HTMLElement ? el.closest("#builder") : null;
    if (!form) { return; }
    // The daily limit's slider has no name: it edits the number it is synced to.
    var name = el.getAttribute("name") || el.getAttribute("data-sync");
    if (!name) { return; }
    var value = editedValue(el);
    var errors = form.querySelectorAll(".field-error[data-cleared-by]");
    for (var i = 0; i < errors.length; i++) {
      if (clearedBy(errors[i], name, value)) { clearError(errors[i]); }
    }
  }
  function describeSlot(slot) {
    // A message slot sent again out of band (the workflow check's, partials/workflow_check.html): its field is read
    // with the message it now holds, or is valid again.
    var name = slot.getAttribute("data-error-slot");
    var field = byId(name);
    if (!field || !/^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName)) { return; }
    var error = byId("err-" + name);
    if (error && slot.contains(error)) {
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", error.id);
    } else {
      field.removeAttribute("aria-invalid");
      field.removeAttribute("aria-describedby");
    }
  }
  function markSteps(announce) {
    var said = [];
    for (var i = 0; i < steps.length; i++) {
      var tab = stepTab(steps[i]);
      if (!tab) { continue; }
      var errors = errorsShownAt(steps[i]);
      var marked = errors.length > 0;
      if (marked && announce && i !== current && !tab.classList.contains("has-error")) {
        var heading = steps[i].querySelector("h2");
        said.push((heading ? heading.textContent.trim() : "A step") + " has an error: " + messageOf(errors[0]));
        revealTab(tab);
      }
      tab.classList.toggle("has-error", marked);
      var badge = tab.querySelector("[data-step-error]");
      if (badge) { badge.hidden = !marked; }
    }
    var alert = document.querySelector("[data-step-alert]");
    if (alert && said.length) { alert.textContent = said.join(" "); }
  }
  function openStepError(section) {
    // The step's first message in view: its field takes the focus when it has one (the message is read with it,
    // aria-describedby), else the message itself.
    var error = errorsShownAt(section)[0];
    if (!error) { return; }
    var field = error.id ? section.querySelector('[aria-describedby~="' + error.id + '"]') : null;
    if (field && /^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName) && !field.closest("[hidden]")) {
      field.focus();
    } else {
      if (!error.hasAttribute("tabindex")) { error.setAttribute("tabindex", "-1"); }
      error.focus();
    }
    error.scrollIntoView({ block: "nearest" });
  }

  function setupBuilder() {
    var form = byId("builder");
    if (!form) { return; }
    document.body.classList.add("js-steps");
    steps = Array.prototype.slice.call(form.querySelectorAll("section.step"));
    var open = form.getAttribute("data-open-step") || "audience";
    var index = 0;
    for (var i = 0; i < steps.length; i++) { if (steps[i].getAttribute("data-step") === open) { index = i; } }
    showStep(index);
    markSteps(false);
    // Messages come and go inside the steps (an htmx request's error, a partial drawn again, a part shown or
    // hidden by a choice): the marks follow whatever changed them.
    if (typeof MutationObserver === "function") {
      var watch = new MutationObserver(function () { markSteps(true); });
      for (var j = 0; j < steps.length; j++) {
        watch.observe(steps[j], { childList: true, subtree: true, attributes: true, attributeFilter: ["hidden"] });
      }
    }
  }

  function insertVariable(button) {
    var field = byId(button.getAttribute("data-target"));
    if (!field) { return; }
    var fallback = byId(button.getAttribute("data-fallback-from"));
    var name = button.getAttribute("data-insert");
    var text = "{" + name + (fallback && fallback.value.trim() ? "|" + fallback.value.trim() : "") + "}";
    var start = field.selectionStart || field.value.length;
    var end = field.selectionEnd || start;
    field.value = field.value.slice(0, start) + text + field.value.slice(end);
    field.focus();
    field.selectionStart = field.selectionEnd = start + text.length;
    // An edit like typing: whatever listens to the field (its counter, clearing its refused message, a preview)
    // hears it. Setting .value alone fires no event.
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function setupForms() {
    document.body.addEventListener("click", function (ev) {
      var target = ev.target instanceof Element ? ev.target : null;
      if (!target) { return; }
      var opener = target.closest("[data-dialog]");
      if (opener) { ev.preventDefault(); openDialog(opener); return; }
      var closer = target.closest("[data-close]");
      if (closer) {
        var dialog = closer.closest("dialog");
        if (dialog) { dialog.close(closer.hasAttribute("data-confirm") ? "confirm" : ""); }
        return;
      }
      var move = target.closest("[data-step-move]");
      if (move) { showStep(current + parseInt(move.getAttribute("data-step-move"), 10)); window.scrollTo(0, 0); return; }
      var tab = target.closest("[data-step-tab]");
      if (tab) {
        for (var i = 0; i < steps.length; i++) { if (steps[i].getAttribute("data-step") === tab.getAttribute("data-step-tab")) { showStep(i); } }
        if (tab.classList.contains("has-error") && steps[current]) { openStepError(steps[current]); }
        return;
      }
      var insert = target.closest("[data-insert]");
      if (insert) { insertVariable(insert); }
    });
    document.body.addEventListener("change", function (ev) {
      var el = ev.target;
      if (!(el instanceof HTMLElement)) { return; }
      if (el.hasAttribute("data-toggles")) { applyToggles(); }
      if (el.getAttribute("data-confirm-dialog") && el.checked) {
        // A checkbox that needs a confirmation: it stays ticked only when its dialog is confirmed (its
        // confirm button); Escape or any other way out unticks it.
        var dialog = byId(el.getAttribute("data-confirm-dialog"));
        if (dialog && typeof dialog.showModal === "function") {
          dialog.returnValue = "";
          dialog.setAttribute("data-confirms", el.id);
          dialog.showModal();
        }
      }
      if (el.hasAttribute("data-template-body") && el.checked) {
        var body = byId("template_body");
        // Another template replaces the text (its message goes with it: err("template_body") names "template").
        if (body) { body.value = el.getAttribute("data-template-body"); countInto(body); }
      }
      if (el.hasAttribute("data-select-all")) {
        var boxes = document.querySelectorAll('input[name="' + el.getAttribute("data-select-all") + '"]');
        for (var i = 0; i < boxes.length; i++) { boxes[i].checked = el.checked; }
      }
      var count = document.querySelector("[data-selected-count]");
      if (count) { count.textContent = document.querySelectorAll('input[name="draft_ids"]:checked').length + " selected"; }
    });
    document.body.addEventListener("input", editedField);
    document.body.addEventListener("change", editedField);
    document.body.addEventListener("htmx:oobAfterSwap", function (ev) {
      // Fired on what was swapped in (detail.target is the slot it replaced, no longer in the page).
      var slot = ev.target instanceof Element ? ev.target.closest("[data-error-slot]") : null;
      if (slot) { describeSlot(slot); }
    });
    document.body.addEventListener("input", function (ev) {
      var el = ev.target;
      if (!(el instanceof HTMLElement)) { return; }
      if (el.hasAttribute("data-counter")) { countInto(el); }
      if (el.hasAttribute("data-sync")) { var other = byId(el.getAttribute("data-sync")); if (other) { other.value = el.value; } }
    });
    // One submit per form: a second click while the first is on its way sends nothing more.
    document.body.addEventListener("submit", function (ev) {
      var form = ev.target;
      if (!(form instanceof HTMLFormElement) || form.hasAttribute("hx-post")) { return; }
      if (form.getAttribute("data-submitting") === "yes") { ev.preventDefault(); return; }
      form.setAttribute("data-submitting", "yes");
      var buttons = form.querySelectorAll("[data-once]");
      for (var i = 0; i < buttons.length; i++) { buttons[i].setAttribute("aria-busy", "true"); }
    });
    window.addEventListener("pageshow", function () {
      var forms = document.querySelectorAll("form[data-submitting]");
      for (var i = 0; i < forms.length; i++) { forms[i].removeAttribute("data-submitting"); }
    });
    var fields = document.querySelectorAll("[data-counter]");
    for (var i = 0; i < fields.length; i++) { countInto(fields[i]); }
    applyToggles();
    setupBuilder();
  }

  function ready() {
    formatTimes(document);
    drawChart();
    setupForms();
    setInterval(function () { formatTimes(document); }, 30000);
    // A live part is not swapped under an open dialog (it would close it with what was typed); it is refreshed
    // once the dialog closes instead.
    document.body.addEventListener("htmx:beforeRequest", function (ev) {
      var elt = ev.detail && ev.detail.elt;
      if (elt && elt.querySelector && !elt.closest("dialog") && elt.querySelector("dialog[open]")) {
        ev.preventDefault();
        elt.setAttribute("data-stale", "yes");
      }
    });
    document.body.addEventListener("htmx:beforeSwap", function (ev) {
      // An answer already on its way when the dialog opened is not swapped in either.
      var target = ev.detail && ev.detail.target;
      if (target && target.querySelector && !target.closest("dialog") && target.querySelector("dialog[open]")) {
        ev.detail.shouldSwap = false;
        target.setAttribute("data-stale", "yes");
      } else if (target && pressed && isLive(target) && target.contains(pressed)) {
        ev.detail.shouldSwap = false;
        if (held.indexOf(target) === -1) { held.push(target); }
      }
    });
    // Nor while a pointer is pressed inside it: the swap would take away the element the press began on, and the
    // browser then fires no click (a click on a campaign of a list refreshing under it did nothing). The part
    // refreshes once the pointer is released, after the click that release makes.
    var pressed = null;
    var held = [];
    function liveEvent(elt) {
      var found = /(?:^|[\s,])(sse:[\w-]+)/.exec(elt.getAttribute("hx-trigger") || "");
      return found ? found[1] : "live-open";
    }
    function released() {
      pressed = null;
      var parts = held;
      held = [];
      setTimeout(function () {
        for (var i = 0; i < parts.length; i++) {
          if (document.contains(parts[i]) && window.htmx) { window.htmx.trigger(parts[i], liveEvent(parts[i])); }
        }
      }, 0);
    }
    document.addEventListener("pointerdown", function (ev) { pressed = ev.target; }, true);
    document.addEventListener("pointerup", released, true);
    document.addEventListener("pointercancel", released, true);
    document.body.addEventListener("close", function (ev) {
      var box = ev.target instanceof HTMLDialogElement ? byId(ev.target.getAttribute("data-confirms")) : null;
      if (box) {
        ev.target.removeAttribute("data-confirms");
        if (ev.target.returnValue !== "confirm") {
          box.checked = false;
          applyToggles();
          box.dispatchEvent(new Event("change", { bubbles: true }));
        }
      }
    }, true);
    // A change that arrives while its live part is being refreshed is queued by htmx on that element, which the
    // refresh then replaces (outerHTML); htmx never sends a removed element's request, so the newest change would
    // not show until another one came (a search stuck at 20 of 30 leads). Such a change is remembered by the
    // part's id and the replacement, once settled, refreshes for it. The replacement must settle at once
    // (base.html sets htmx's defaultSettleDelay to 0): htmx wires a swapped-in element up, its sse: listener
    // included, only when it settles, and a change that came in the default 20 ms between found the old
    // element gone and the new one deaf (tests/e2e/console/test_live.py).
    var refreshing = [];
    var missed = {};
    function isLive(elt) { return !!(elt && elt.id && /(^|[\s,])sse:/.test(elt.getAttribute("hx-trigger") || "")); }
    document.body.addEventListener("htmx:confirm", function (ev) {
      var elt = ev.detail && ev.detail.elt;
      var cause = ev.detail && ev.detail.triggeringEvent;
      if (isLive(elt) && refreshing.indexOf(elt) !== -1) { missed[elt.id] = cause && cause.type ? cause.type : "live-open"; }
    });
    document.body.addEventListener("htmx:beforeSend", function (ev) {
      var elt = ev.detail && ev.detail.elt;
      if (isLive(elt)) { refreshing.push(elt); delete missed[elt.id]; }
    });
    document.body.addEventListener("htmx:afterRequest", function (ev) {
      var at = refreshing.indexOf(ev.detail && ev.detail.elt);
      if (at !== -1) { refreshing.splice(at, 1); }
    });
    document.body.addEventListener("htmx:afterSettle", function () {
      for (var id in missed) {
        var part = byId(id);
        if (part && refreshing.indexOf(part) === -1 && window.htmx) {
          var name = missed[id];
          delete missed[id];
          window.htmx.trigger(part, name);
        }
      }
    });
    document.body.addEventListener("close", function (ev) {
      var stale = ev.target instanceof Element ? ev.target.closest('[data-stale="yes"]') : null;
      if (stale && window.htmx) { stale.removeAttribute("data-stale"); window.htmx.trigger(stale, liveEvent(stale)); }
    }, true);
    document.body.addEventListener("htmx:afterRequest", function (ev) {
      var xhr = ev.detail && ev.detail.xhr;
      var stamp = xhr ? Date.parse(xhr.getResponseHeader("X-Server-Time") || "") : NaN;
      var factor = xhr ? parseFloat(xhr.getResponseHeader("X-Clock-Scale") || "") : NaN;
      if (factor > 0) { scale = factor; }
      if (!isNaN(stamp) && stamp > serverNow()) { sync = { server: stamp, local: Date.now() }; }
    });
    document.body.addEventListener("htmx:afterSettle", function (ev) {
      formatTimes(ev.target);
      var counters = ev.target && ev.target.querySelectorAll ? ev.target.querySelectorAll("[data-counter]") : [];
      for (var i = 0; i < counters.length; i++) { countInto(counters[i]); }
      applyToggles();
      // A form that just opened (edit a draft, reject it) takes the focus once htmx has wired it up.
      var focus = document.querySelector("[data-autofocus]");
      if (focus) { focus.removeAttribute("data-autofocus"); focus.focus(); }
      if (ev.target && ev.target.querySelector && ev.target.querySelector("#series-data")) { drawChart(); }
    });
    // A form htmx posts whose answer is an error (a service that did not answer, a refusal without a partial) or
    // that got no answer at all: nothing is swapped, so everything typed stays; the message is shown at the form
    // (the answer's own [data-problem] or first .field-error, else a plain sentence), and goes with the next answer.
    // Inside a [data-request-errors] holder (each step of the campaign builder, one form of six steps) the message
    // goes next to what the request would have changed (just before its target: the CSV report, the workflow's
    // graph, the video step), with a "Try again" that sends the same request again: at the top of the form it sat
    // on another step than the one the user was on, and a request made by a change (the workflow redrawn) or by an
    // upgrade (the plan's steps) had no button to press again.
    function requestErrorBox(elt) {
      // The holder or form around what posted, or what holds the button that posted by itself (a draft's "Approve").
      return elt && elt.closest ? (elt.closest("form, [data-request-errors]") || elt.parentElement) : null;
    }
    function requestErrorAnchor(box, target) {
      // The element a holder's message goes just before (null: at the top of the box).
      var held = box.hasAttribute("data-request-errors") && target && target !== box && box.contains(target);
      return held ? target : null;
    }
    function existingSlot(box, anchor) {
      if (!anchor) { return box.querySelector("[data-request-error]"); }
      var before = anchor.previousElementSibling;
      return before && before.hasAttribute("data-request-error") ? before : null;
    }
    function requestErrorSlot(elt, target) {
      var box = requestErrorBox(elt);
      if (!box) { return null; }
      var anchor = requestErrorAnchor(box, target);
      var slot = existingSlot(box, anchor);
      if (!slot) {
        slot = document.createElement("p");
        slot.className = "field-error request-error";
        slot.setAttribute("role", "alert");
        slot.setAttribute("data-request-error", "");
        if (anchor) { anchor.parentNode.insertBefore(slot, anchor); } else { box.insertBefore(slot, box.firstChild); }
      }
      return slot;
    }
    function sayRequestError(slot, message, config) {
      slot.textContent = message;
      var box = requestErrorBox(config && config.elt);
      if (!box || !box.hasAttribute("data-request-errors") || !window.htmx) { return; }
      var again = document.createElement("button");
      again.type = "button";
      again.className = "btn btn-sm";
      again.setAttribute("data-request-retry", "");
      again.textContent = "Try again";
      // The same request from the same element: its hx-include (the whole builder as it is now), target and swap.
      again.addEventListener("click", function () {
        if (document.contains(config.elt)) { window.htmx.ajax(String(config.verb).toUpperCase(), config.path, { source: config.elt }); }
      });
      slot.appendChild(document.createTextNode(" "));
      slot.appendChild(again);
    }
    function isPost(ev) {
      var config = ev.detail && ev.detail.requestConfig;
      return !!config && String(config.verb || "").toLowerCase() === "post";
    }
    document.body.addEventListener("htmx:beforeSwap", function (ev) {
      if (!ev.detail.isError || !isPost(ev)) { return; }
      // Here detail.elt is the swap's target (a draft's whole card); the element that posted is the request's.
      var config = ev.detail.requestConfig;
      var slot = requestErrorSlot(config.elt, ev.detail.target);
      if (!slot) { return; }
      // Handled here: nothing is swapped, and htmx does not report it as an unhandled error.
      ev.detail.shouldSwap = false;
      ev.detail.isError = false;
      var said = null;
      try {
        var answer = new DOMParser().parseFromString(ev.detail.xhr.responseText || "", "text/html");
        said = answer.querySelector("[data-problem]") || answer.querySelector(".field-error");
      } catch (e) { said = null; }
      sayRequestError(slot, said && said.textContent.trim() ? said.textContent.trim()
        : "That did not work (error " + ev.detail.xhr.status + "). What you typed is kept: try again in a moment.", config);
    });
    document.body.addEventListener("htmx:sendError", function (ev) {
      if (!isPost(ev)) { return; }
      var slot = requestErrorSlot(ev.detail.elt, ev.detail.target);
      if (slot) {
        sayRequestError(slot, "The console did not answer (is the network down?). What you typed is kept: try again in a moment.",
          ev.detail.requestConfig);
      }
    });
    document.body.addEventListener("htmx:beforeSend", function (ev) {
      if (!isPost(ev)) { return; }
      var box = requestErrorBox(ev.detail.elt);
      var slot = box ? existingSlot(box, requestErrorAnchor(box, ev.detail.target)) : null;
      if (slot) { slot.remove(); }
    });
    document.body.addEventListener("htmx:sseOpen", function () {
      setLive("on");
      // What changed between the page's render and the stream's start: one refresh of each live part.
      var parts = document.querySelectorAll('[hx-trigger*="live-open"]');
      for (var i = 0; i < parts.length; i++) { if (window.htmx) { window.htmx.trigger(parts[i], "live-open"); } }
    });
    document.body.addEventListener("htmx:sseError", function () { setLive("retry"); });
    // Leaving the page closes the stream first (no aborted request left behind).
    window.addEventListener("pagehide", function () {
      var nodes = document.querySelectorAll("[sse-connect]");
      for (var i = 0; i < nodes.length; i++) {
        var internal = window.htmx && window.htmx.closest ? nodes[i]["htmx-internal-data"] : null;
        var source = internal && internal.sseEventSource;
        if (source) { source.close(); }
      }
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", ready); } else { ready(); }
})();
