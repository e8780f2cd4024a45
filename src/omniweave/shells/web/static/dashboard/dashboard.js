/* omniweave dashboard: draws every chart of the page from its data-option (ECharts, with its aria
   description), toggles the table under a chart, and redraws after htmx swaps a page in. No inline script. */
(function () {
  "use strict";
  var charts = [];

  function draw(root) {
    charts.forEach(function (c) { if (!document.body.contains(c.getDom())) { c.dispose(); } });
    charts = charts.filter(function (c) { return !c.isDisposed(); });
    (root || document).querySelectorAll("div.chart[data-option]").forEach(function (el) {
      if (el.getAttribute("data-drawn")) { return; }
      var option = JSON.parse(el.getAttribute("data-option"));
      option.aria = { enabled: true, decal: { show: false } };
      option.animation = false;
      var chart = echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(option);
      el.setAttribute("data-drawn", "1");
      charts.push(chart);
    });
  }

  function toggles(root) {
    (root || document).querySelectorAll("[data-table-toggle]").forEach(function (button) {
      if (button.getAttribute("data-bound")) { return; }
      button.setAttribute("data-bound", "1");
      button.addEventListener("click", function () {
        var target = document.getElementById(button.getAttribute("data-table-toggle"));
        var open = target.hasAttribute("hidden");
        if (open) { target.removeAttribute("hidden"); } else { target.setAttribute("hidden", ""); }
        button.setAttribute("aria-expanded", open ? "true" : "false");
      });
    });
  }

  function ready(root) { draw(root); toggles(root); }

  document.addEventListener("DOMContentLoaded", function () { ready(document); });
  document.addEventListener("htmx:afterSettle", function (e) { ready(e.target); });
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
})();
