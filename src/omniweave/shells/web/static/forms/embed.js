/* omniweave embeddable sign-up form. Served by omniweave itself; makes no request to anyone else.
 *
 *   <div data-omniweave-form="newsletter" data-placement="embed" data-lang="en"></div>
 *   <script src="https://YOUR-OMNIWEAVE/f/static/embed.js" async></script>
 *
 * The form is rendered by omniweave (the same HTML as the hosted page /f/NAME, in the brand kit's colours,
 * with omniweave's stylesheet) and posted back to it with CORS (the form's allowed_origins). The page's analytics.js anonymous id (cookie or localStorage
 * ajs_anonymous_id) goes with the sign-up, so the visitor's earlier browsing joins the person.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = script ? new URL(script.src).origin : "";

  function anonymousId() {
    var match = document.cookie.match(/(?:^|;\s*)ajs_anonymous_id=([^;]*)/);
    var value = match ? decodeURIComponent(match[1]) : null;
    if (!value) {
      try { value = window.localStorage.getItem("ajs_anonymous_id"); } catch (e) { value = null; }
    }
    return value ? value.replace(/^"|"$/g, "") : "";
  }

  function query(box) {
    var params = new URLSearchParams({ fragment: "1", placement: box.getAttribute("data-placement") || "embed" });
    var lang = box.getAttribute("data-lang") || (document.documentElement.lang || "").slice(0, 2);
    if (lang) { params.set("lang", lang); }
    return params;
  }

  function show(box, html) {
    box.innerHTML = html;
    var form = box.querySelector("form");
    if (form) {
      var field = form.querySelector("input[name=anonymous_id]");
      if (field && !field.value) { field.value = anonymousId(); }
      form.addEventListener("submit", function (event) { event.preventDefault(); send(box, form); });
    }
    var focus = box.querySelector("[role=alert], [data-ow-thanks]");
    if (focus) { focus.setAttribute("tabindex", "-1"); focus.focus(); }
  }

  function send(box, form) {
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    var url = new URL(form.getAttribute("action"), base);
    url.searchParams.set("fragment", "1");
    fetch(url.toString(), {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      body: new URLSearchParams(new FormData(form))
    }).then(function (response) { return response.text(); })
      .then(function (html) { show(box, html); })
      .catch(function () { if (button) { button.disabled = false; } });
  }

  function load(box) {
    var name = box.getAttribute("data-omniweave-form");
    fetch(base + "/f/" + encodeURIComponent(name) + "?" + query(box).toString(), { mode: "cors", credentials: "omit" })
      .then(function (response) { return response.text(); })
      .then(function (html) { show(box, html); });
  }

  function stylesheet() {
    // the forms' own stylesheet (scoped to .ow-form: the page's other styles are left alone), once a page
    if (document.querySelector("link[data-omniweave-forms]")) { return; }
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = base + "/f/static/forms.css";
    link.setAttribute("data-omniweave-forms", "");
    document.head.appendChild(link);
  }

  function start() {
    stylesheet();
    var boxes = document.querySelectorAll("[data-omniweave-form]");
    for (var i = 0; i < boxes.length; i++) { load(boxes[i]); }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
