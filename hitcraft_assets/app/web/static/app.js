// The theme toggle (auto → dark → light): the choice is kept in the hc_theme cookie, which the server reads to
// render <html data-theme> (so the next page opens in it, with no flash), and charts.js redraws the charts.
// Without JavaScript the button stays hidden and the page follows the system's prefers-color-scheme.
(function () {
  "use strict";
  var order = ["auto", "dark", "light"];
  var names = { auto: "system", dark: "dark", light: "light" };
  function label(button, theme) {
    button.textContent = "Theme: " + names[theme];
    button.setAttribute("aria-label", "Colour theme: " + names[theme] + ". Change it");
  }
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    var root = document.documentElement;
    label(button, root.dataset.theme || "auto");
    button.hidden = false;
    button.addEventListener("click", function () {
      var now = root.dataset.theme || "auto";
      var next = order[(order.indexOf(now) + 1) % order.length];
      root.dataset.theme = next;
      document.cookie = "hc_theme=" + next + "; Path=/; Max-Age=31536000; SameSite=Lax" +
        (location.protocol === "https:" ? "; Secure" : "");
      label(button, next);
      document.dispatchEvent(new CustomEvent("hc:themechange", { detail: next }));
    });
  });
})();
