// The elevation countdown in the demo header. Progressive enhancement: the server already
// wrote the minutes left; this only ticks them down each second, then says when the
// elevation is over. It counts from the page load, so the browser's clock does not matter.
(function () {
  "use strict";
  var boxes = document.querySelectorAll("[data-countdown]");
  if (!boxes.length) {
    return;
  }
  var loaded = Date.now();

  function format(seconds) {
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    return minutes + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function tick() {
    var elapsed = Math.floor((Date.now() - loaded) / 1000);
    var running = false;
    boxes.forEach(function (box) {
      var left = parseInt(box.getAttribute("data-countdown"), 10) - elapsed;
      var shown = box.querySelector("[data-countdown-left]");
      if (left > 0) {
        running = true;
        if (shown) {
          shown.textContent = format(left);
        }
        return;
      }
      if (box.hasAttribute("data-countdown-done")) {
        return;
      }
      box.setAttribute("data-countdown-done", "");
      var part = box.querySelector("[data-countdown-running]");
      if (part) {
        part.hidden = true;
      }
      var ended = box.querySelector("[data-countdown-ended]");
      if (ended) {
        ended.textContent = "· elevation ended: sensitive actions ask for your password again";
      }
      document.querySelectorAll("[data-countdown-hide]").forEach(function (node) {
        node.hidden = true;
      });
    });
    if (running) {
      window.setTimeout(tick, 1000 - ((Date.now() - loaded) % 1000));
    }
  }

  tick();
})();
