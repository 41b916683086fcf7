// /exercises, better with JavaScript: a checked exercise is swapped in where it stands,
// instead of a full page load that jumps to the top. Without this script the same plain
// forms post and the server answers with the whole page, so nothing depends on it.
(function () {
  "use strict";
  if (!window.fetch || !window.DOMParser || !window.FormData) {
    return;
  }

  function swapIn(section, html) {
    var page = new DOMParser().parseFromString(html, "text/html");
    var fresh = page.getElementById(section.id);
    if (!fresh) {
      return false;
    }
    section.replaceWith(fresh);
    var progress = page.querySelector("[data-testid=exercises-progress]");
    var current = document.querySelector("[data-testid=exercises-progress]");
    if (progress && current) {
      current.replaceWith(progress);
    }
    fresh.querySelectorAll("form[data-exercise]").forEach(enhance);
    var heading = fresh.querySelector("h2");
    heading.setAttribute("tabindex", "-1");
    heading.focus();
    return true;
  }

  function enhance(form) {
    form.addEventListener("submit", function (event) {
      var section = form.closest("section.exercise");
      if (!section) {
        return;
      }
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          if (!swapIn(section, html)) {
            form.submit();
          }
        })
        .catch(function () { form.submit(); });
    });
  }

  document.querySelectorAll("form[data-exercise]").forEach(enhance);
})();
