// webserv demo: annotate every link marked data-probe with the status this
// server answers for it (a HEAD request, redirects not followed). The
// attribute's value, when set, is the expected status (e.g. 404 for /missing).
"use strict";

function badge(link, text, ok) {
  const span = document.createElement("span");
  span.className = "probe " + (ok ? "ok" : "bad");
  span.textContent = text;
  link.after(span);
}

async function probe(link) {
  const expected = link.dataset.probe;
  try {
    const res = await fetch(link.href, { method: "HEAD", redirect: "manual", cache: "no-store" });
    // A redirect that is not followed is an opaque response with status 0.
    if (res.type === "opaqueredirect") {
      badge(link, "3xx", !expected || expected.startsWith("3"));
    } else {
      const ok = expected ? String(res.status) === expected : res.status < 400;
      badge(link, String(res.status), ok);
    }
  } catch (err) {
    badge(link, "unreachable", false);
  }
}

// Links to another virtual host of this same listener (data-vhost) follow the
// port this page came from, so they work on any port the server listens on.
function samePort(link) {
  const url = new URL(link.href);
  url.port = location.port;
  if (link.textContent === link.getAttribute("href")) link.textContent = url.href;
  link.href = url.href;
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("a[data-vhost]").forEach(samePort);
  document.querySelectorAll("a[data-probe]").forEach(probe);
});
