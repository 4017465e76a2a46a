// The theme picker: light, dark, or the system's (prefers-color-scheme). Loaded in <head>
// as a plain blocking script (the CSP forbids inline ones) so the class on <html> is set
// before the first paint: a dark page never flashes white.
(function () {
  "use strict";
  var KEY = "fusionroom-theme";
  var root = document.documentElement;

  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : "system";
    } catch (e) {
      return "system"; // storage refused (private mode, a policy): follow the system
    }
  }

  function apply(choice) {
    root.classList.remove("light", "dark");
    if (choice !== "system") root.classList.add(choice);
  }

  apply(stored());

  document.addEventListener("DOMContentLoaded", function () {
    var picker = document.getElementById("theme-picker");
    if (!picker) return;
    picker.value = stored();
    picker.closest("[data-theme-picker]").hidden = false;
    picker.addEventListener("change", function () {
      try {
        if (picker.value === "system") window.localStorage.removeItem(KEY);
        else window.localStorage.setItem(KEY, picker.value);
      } catch (e) {
        /* not remembered, still applied */
      }
      apply(picker.value);
    });
  });
  // Another tab changed it: follow.
  window.addEventListener("storage", function (event) {
    if (event.key !== KEY) return;
    apply(stored());
    var picker = document.getElementById("theme-picker");
    if (picker) picker.value = stored();
  });
})();
