// The console's only script: parts of a page marked data-poll="<url>" are replaced by that
// URL's fragment every second until the fragment no longer asks to be polled (a sync run's
// progress). Without JavaScript the page still works: reload it.
(function () {
  "use strict";
  function poll(element) {
    var url = element.getAttribute("data-poll");
    if (!url) { return; }
    window.setTimeout(function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.redirected || !response.ok) { throw new Error(String(response.status)); }
          return response.text();
        })
        .then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html.trim();
          var next = holder.firstElementChild;
          if (!next) { return; }
          element.replaceWith(next);
          poll(next);
        })
        .catch(function () { window.setTimeout(function () { poll(element); }, 3000); });
    }, 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
  });
})();
