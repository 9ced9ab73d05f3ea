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

  // The server's clock (a demo runs campaign time faster than the wall clock; browsers' clocks drift).
  var serverNow = Date.parse(document.body ? document.body.getAttribute("data-now") || "" : "");
  var offset = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function relative(date) {
    var seconds = (date.getTime() - (Date.now() + offset)) / 1000;
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

  function ready() {
    formatTimes(document);
    drawChart();
    setInterval(function () { formatTimes(document); }, 30000);
    document.body.addEventListener("htmx:afterRequest", function (ev) {
      var xhr = ev.detail && ev.detail.xhr;
      var stamp = xhr ? Date.parse(xhr.getResponseHeader("X-Server-Time") || "") : NaN;
      if (!isNaN(stamp)) { offset = stamp - Date.now(); }
    });
    document.body.addEventListener("htmx:afterSettle", function (ev) {
      formatTimes(ev.target);
      if (ev.target && ev.target.querySelector && ev.target.querySelector("#series-data")) { drawChart(); }
    });
    document.body.addEventListener("htmx:sseOpen", function () { setLive("on"); });
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
