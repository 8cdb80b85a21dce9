// Browser walk-through of the webserv demo site (www/), in a real headless Chromium.
//
// Not part of `make test` (CI has no browser): run it with `make browser-test`, or
// tests/browser/run.sh, which starts a server on free ports and sets:
//
//   BASE_URL     the main site, e.g. http://127.0.0.1:8080 (default)
//   SECOND_URL   the listener that serves only the second virtual host (default :8081)
//   UPLOAD_DIR   the upload_store of /uploads/ on disk, to check DELETE removed the file
//   CHROMIUM     the browser binary (default /usr/bin/chromium)
//   SHOTS        where screenshots go (default tests/browser/screenshots)
//
// Every check is recorded; the script goes on after a failure and exits 1 at the end
// if any check failed, after listing them.

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { check, eq, finish, section, step } from "./checks.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.BASE_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
const SECOND = (process.env.SECOND_URL || "http://127.0.0.1:8081").replace(/\/$/, "");
const UPLOAD_DIR = process.env.UPLOAD_DIR || path.resolve(HERE, "../../www/uploads");
const SHOTS = process.env.SHOTS || path.join(HERE, "screenshots");
const PORT = new URL(BASE).port || "80";

fs.mkdirSync(SHOTS, { recursive: true });
for (const f of fs.readdirSync(SHOTS)) if (f.endsWith(".png")) fs.rmSync(path.join(SHOTS, f));

// ---- bookkeeping -------------------------------------------------------------------

// Problems the page itself reports: script errors, console errors, and answers
// >= 400 that the step did not announce as expected.
let pageProblems = [];
let expectedBad = new Set();

function watch(page) {
  page.on("pageerror", (err) => pageProblems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = msg.text();
    // Chromium logs every >= 400 answer as a console error; the response
    // listener below judges those.
    if (/Failed to load resource: the server responded with a status of/.test(text)) return;
    pageProblems.push(`console error: ${text}`);
  });
  page.on("requestfailed", (req) => {
    const why = req.failure()?.errorText || "";
    if (why === "net::ERR_ABORTED") return; // navigations that replaced a page
    pageProblems.push(`request failed: ${req.method()} ${req.url()} ${why}`);
  });
  page.on("response", (res) => {
    if (res.status() < 400) return;
    const u = new URL(res.url());
    const key = `${res.status()} ${u.pathname}`;
    if (!expectedBad.has(key)) pageProblems.push(`unexpected ${res.status()} for ${res.request().method()} ${res.url()}`);
  });
}

function expectNoProblems(what) {
  check(pageProblems.length === 0, `${what}: no script errors or unexpected failed loads` +
    (pageProblems.length ? `\n         ${pageProblems.join("\n         ")}` : ""));
  pageProblems = [];
}

let shotCount = 0;
async function shot(page, name, opts = {}) {
  shotCount++;
  const file = path.join(SHOTS, `${String(shotCount).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, ...opts });
}

// Nothing wider than the viewport: no horizontal scrolling.
async function expectNoOverflow(page, what) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  check(scroll <= client, `${what}: no horizontal overflow (scrollWidth ${scroll}, clientWidth ${client})`);
}

// The stylesheet really applied (not a 404 or a wrong Content-Type).
async function expectStyled(page, what) {
  const font = await page.evaluate(() => getComputedStyle(document.body).fontFamily);
  check(/system-ui/.test(font), `${what}: /assets/style.css applied (body font ${font})`);
}

// All <img> loaded and decoded.
async function expectImagesLoaded(page, what) {
  const broken = await page.evaluate(() =>
    [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src));
  check(broken.length === 0, `${what}: every image loaded${broken.length ? " (broken: " + broken.join(", ") + ")" : ""}`);
}

// ---- the walk-through --------------------------------------------------------------

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "webserv-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
  colorScheme: "light",
});
const page = context.pages()[0] || (await context.newPage());
watch(page);
page.setDefaultTimeout(15000);

const stamp = Date.now().toString(36);
const fileA = `walk-${stamp}-alpha.txt`;
const fileB = `walk-${stamp}-beta notes.txt`; // a space: exercises URL encoding
const putName = `walk-${stamp}-put.txt`;

try {
  await step("front page", async () => {
    expectedBad = new Set(["404 /missing", "418 /teapot"]);
    const res = await page.goto(`${BASE}/`);
    eq(res.status(), 200, "GET / status");
    check((await page.title()).startsWith("webserv"), `title "${await page.title()}"`);
    eq(await page.locator("header.top h1").textContent(), "webserv", "heading");
    const probes = await page.locator("a[data-probe]").count();
    check(probes >= 15, `${probes} probed links`);
    await page.waitForFunction((n) => document.querySelectorAll(".probe").length === n, probes);
    const badges = await page.$$eval(".probe", (els) =>
      els.map((e) => ({ ok: e.classList.contains("ok"), text: e.textContent, link: e.previousElementSibling.getAttribute("href") })));
    const red = badges.filter((b) => !b.ok);
    check(red.length === 0, `all ${badges.length} status badges green` +
      (red.length ? ` (red: ${red.map((b) => `${b.link}=${b.text}`).join(", ")})` : ""));
    await expectStyled(page, "front page");
    await expectImagesLoaded(page, "front page");
    await expectNoOverflow(page, "front page");
    await shot(page, "front-page");
    expectNoProblems("front page");
  });

  await step("front page links", async () => {
    // Every same-origin link on the front page answers < 400, except the
    // documented /missing and /teapot.
    const hrefs = await page.$$eval("a[href]", (as) => as.map((a) => a.href));
    for (const href of [...new Set(hrefs)]) {
      const u = new URL(href);
      if (u.origin !== new URL(BASE).origin) continue;
      const r = await page.request.get(href, { maxRedirects: 0 });
      const want = u.pathname === "/missing" ? 404 : u.pathname === "/teapot" ? 418 : null;
      if (want) eq(r.status(), want, `GET ${u.pathname}${u.search}`);
      else check(r.status() < 400, `GET ${u.pathname}${u.search} -> ${r.status()}`);
    }
  });

  await step("front page, phone width and dark scheme", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.emulateMedia({ colorScheme: "dark" });
    expectedBad = new Set(["404 /missing", "418 /teapot"]);
    await page.goto(`${BASE}/`);
    await page.waitForFunction(() => document.querySelectorAll(".probe").length === document.querySelectorAll("a[data-probe]").length);
    await expectNoOverflow(page, "front page at 390px");
    await shot(page, "front-page-phone-dark");
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.emulateMedia({ colorScheme: "light" });
    expectNoProblems("front page (phone)");
  });

  await step("static assets", async () => {
    expectedBad = new Set();
    const want = {
      "/assets/style.css": "text/css",
      "/assets/app.js": "javascript",
      "/assets/logo.svg": "image/svg+xml",
      "/assets/pixel.png": "image/png",
      "/assets/notes.txt": "text/plain",
      "/assets/data.json": "application/json",
    };
    for (const [p, type] of Object.entries(want)) {
      const res = await page.goto(`${BASE}${p}`);
      eq(res.status(), 200, `GET ${p}`);
      const ct = res.headers()["content-type"] || "";
      check(ct.includes(type), `${p} Content-Type "${ct}" contains ${type}`);
      check(!!res.headers()["etag"] && !!res.headers()["last-modified"], `${p} has ETag and Last-Modified`);
    }
    await page.goto(`${BASE}/assets/notes.txt`);
    await shot(page, "asset-notes-txt");
    await page.goto(`${BASE}/assets/logo.svg`);
    await shot(page, "asset-logo-svg", { fullPage: false }); // fullPage hangs on SVG documents
    const ico = await page.request.get(`${BASE}/favicon.ico`);
    eq(ico.status(), 200, "GET /favicon.ico (browsers ask for it on every page without an icon link)");
    // A conditional request answers 304, a range 206.
    const first = await page.request.get(`${BASE}/assets/notes.txt`);
    const etag = first.headers()["etag"];
    const again = await page.request.get(`${BASE}/assets/notes.txt`, { headers: { "If-None-Match": etag } });
    eq(again.status(), 304, "If-None-Match with the ETag");
    const range = await page.request.get(`${BASE}/assets/notes.txt`, { headers: { Range: "bytes=0-9" } });
    eq(range.status(), 206, "Range: bytes=0-9 status");
    eq((await range.body()).length, 10, "Range: bytes=0-9 length");
    expectNoProblems("assets");
  });

  await step("autoindex listing /files/", async () => {
    const res = await page.goto(`${BASE}/files/`);
    eq(res.status(), 200, "GET /files/");
    const names = await page.$$eval("a", (as) => as.map((a) => a.textContent.trim()));
    for (const n of ["docs/", "a&b <c>.txt", "binary.bin", "readme.txt", "with spaces.txt"]) {
      check(names.includes(n), `listing shows "${n}"`);
    }
    check(names.indexOf("docs/") < names.indexOf("readme.txt"), "directories listed first");
    await expectNoOverflow(page, "/files/");
    await shot(page, "files-listing");
    // Each entry opens.
    for (const n of ["a&b <c>.txt", "with spaces.txt"]) {
      await page.goto(`${BASE}/files/`);
      const [resp] = await Promise.all([page.waitForNavigation(), page.getByRole("link", { name: n, exact: true }).click()]);
      eq(resp.status(), 200, `clicking "${n}" opens it`);
    }
    await page.goto(`${BASE}/files/`);
    await page.getByRole("link", { name: "docs/", exact: true }).click();
    await page.waitForLoadState();
    check(page.url().endsWith("/files/docs/"), `into docs/ (${page.url()})`);
    await shot(page, "files-docs-listing");
    // Without the slash: a 301 to the slash.
    const r = await page.goto(`${BASE}/files/docs`);
    check(page.url().endsWith("/files/docs/") && r.status() === 200, `/files/docs redirects to /files/docs/ (${page.url()})`);
    expectNoProblems("/files/");
  });

  await step("custom error page, redirect, teapot", async () => {
    expectedBad = new Set(["404 /missing", "404 /no/such/page.html", "418 /teapot"]);
    const res = await page.goto(`${BASE}/missing`);
    eq(res.status(), 404, "GET /missing status");
    eq(await page.title(), "404 Not Found · webserv demo", "custom 404 title");
    eq((await page.locator(".error-page .code").textContent()).trim(), "404", "big 404");
    eq((await page.locator("h1").textContent()).trim(), "Nothing here", "404 heading");
    await expectStyled(page, "404 page");
    await shot(page, "error-404");
    // The 5xx page, viewed directly (no demo script fails on purpose).
    await page.goto(`${BASE}/errors/50x.html`);
    eq(await page.title(), "Server error · webserv demo", "50x page title");
    await expectStyled(page, "50x page");
    await shot(page, "error-50x");
    const deep = await page.goto(`${BASE}/no/such/page.html`);
    eq(deep.status(), 404, "GET /no/such/page.html status");
    await expectStyled(page, "404 page at a nested path");
    await page.getByRole("link", { name: "Back to the front page" }).click();
    await page.waitForLoadState();
    eq(new URL(page.url()).pathname, "/", "the 404 page links back home");
    await page.goto(`${BASE}/old-page`);
    eq(new URL(page.url()).pathname, "/", "/old-page redirects to /");
    const tea = await page.goto(`${BASE}/teapot`);
    eq(tea.status(), 418, "/teapot status");
    eq((await page.locator("body").innerText()).trim(), "I'm a teapot", "/teapot body");
    expectNoProblems("errors");
  });

  await step("upload two files with the form", async () => {
    expectedBad = new Set();
    await page.goto(`${BASE}/upload.html`);
    eq(await page.title(), "Upload · webserv demo", "upload page title");
    await expectStyled(page, "upload page");
    await expectNoOverflow(page, "upload page");
    await shot(page, "upload-form");
    await page.setInputFiles("#files", [
      { name: fileA, mimeType: "text/plain", buffer: Buffer.from(`alpha ${stamp}\n`) },
      { name: fileB, mimeType: "text/plain", buffer: Buffer.from(`beta ${stamp}\n`) },
    ]);
    const [resp] = await Promise.all([
      page.waitForNavigation(),
      page.getByRole("button", { name: "Upload", exact: true }).click(),
    ]);
    eq(resp.status(), 201, "POST /uploads/ status");
    const text = await page.locator("body").innerText();
    console.log(`       result page says: ${JSON.stringify(text.slice(0, 300))}`);
    check(text.includes(fileA) || text.includes(encodeURIComponent(fileA)), "result page names the first file");
    await shot(page, "upload-result");
    check(fs.existsSync(path.join(UPLOAD_DIR, fileA)), `${fileA} is on disk`);
    check(fs.existsSync(path.join(UPLOAD_DIR, fileB)), `${fileB} is on disk`);
    const onDisk = fs.existsSync(path.join(UPLOAD_DIR, fileA)) ? fs.readFileSync(path.join(UPLOAD_DIR, fileA), "utf8") : "";
    eq(onDisk, `alpha ${stamp}\n`, "uploaded content is byte-exact");
    expectNoProblems("upload");
  });

  await step("uploaded files page: list and delete", async () => {
    await page.goto(`${BASE}/uploads.html`);
    eq(await page.title(), "Uploaded files · webserv demo", "uploads page title");
    const rowFor = (n) => page.locator("#files tr", { has: page.getByRole("link", { name: n, exact: true }) });
    await rowFor(fileA).waitFor();
    eq(await rowFor(fileA).count(), 1, `${fileA} listed`);
    eq(await rowFor(fileB).count(), 1, `${fileB} listed`);
    const href = await rowFor(fileB).locator("a").getAttribute("href");
    const got = await page.request.get(`${BASE}${href}`);
    eq(await got.text(), `beta ${stamp}\n`, `the link of "${fileB}" serves it`);
    await expectNoOverflow(page, "uploads page");
    await shot(page, "uploads-list");
    await rowFor(fileA).getByRole("button", { name: "Delete" }).click();
    await page.waitForFunction(() => /DELETE/.test(document.getElementById("status").textContent));
    const status = await page.locator("#status").textContent();
    check(/-> 204 \(deleted\)/.test(status), `status line "${status}"`);
    await rowFor(fileA).waitFor({ state: "detached" });
    eq(await rowFor(fileA).count(), 0, `${fileA} gone from the list`);
    eq(await rowFor(fileB).count(), 1, `${fileB} still listed`);
    check(!fs.existsSync(path.join(UPLOAD_DIR, fileA)), `${fileA} gone from disk`);
    check(fs.existsSync(path.join(UPLOAD_DIR, fileB)), `${fileB} still on disk`);
    expectedBad = new Set([`404 /uploads/${encodeURIComponent(fileA)}`]);
    const gone = await page.request.get(`${BASE}/uploads/${encodeURIComponent(fileA)}`);
    eq(gone.status(), 404, "GET of the deleted file");
    await shot(page, "uploads-after-delete");
    expectNoProblems("uploads page");
  });

  await step("PUT box", async () => {
    expectedBad = new Set();
    await page.goto(`${BASE}/upload.html`);
    await page.fill("#put-name", putName);
    await page.fill("#put-body", `put ${stamp}\nsecond line`);
    await page.getByRole("button", { name: /^PUT/ }).click();
    await page.waitForFunction(() => /->|failed/.test(document.getElementById("put-status").textContent));
    let status = await page.locator("#put-status").textContent();
    check(/-> 201/.test(status), `first PUT: "${status}"`);
    await shot(page, "put-created");
    const disk = path.join(UPLOAD_DIR, putName);
    eq(fs.existsSync(disk) && fs.readFileSync(disk, "utf8"), `put ${stamp}\nsecond line`, "PUT content on disk");
    await page.fill("#put-body", `replaced ${stamp}`);
    await page.evaluate(() => { document.getElementById("put-status").textContent = ""; });
    await page.getByRole("button", { name: /^PUT/ }).click();
    await page.waitForFunction(() => /->|failed/.test(document.getElementById("put-status").textContent));
    status = await page.locator("#put-status").textContent();
    check(/-> 204/.test(status), `second PUT replaces: "${status}"`);
    eq(fs.existsSync(disk) && fs.readFileSync(disk, "utf8"), `replaced ${stamp}`, "replaced content on disk");
    await page.getByRole("link", { name: /open it/ }).click();
    await page.waitForLoadState();
    eq((await page.locator("body").innerText()).trim(), `replaced ${stamp}`, "\"open it\" shows the file");
    await page.goto(`${BASE}/uploads.html`);
    await page.getByRole("link", { name: putName, exact: true }).waitFor();
    check(true, "PUT file listed on /uploads.html");
    expectNoProblems("PUT");
  });

  await step("CGI env.py", async () => {
    const res = await page.goto(`${BASE}/cgi-bin/env.py?hello=world`);
    eq(res.status(), 200, "status");
    const text = await page.locator("body").innerText();
    for (const line of ["QUERY_STRING=hello=world", "REQUEST_METHOD=GET", "GATEWAY_INTERFACE=CGI/1.1", `SERVER_PORT=${PORT}`, "SCRIPT_NAME=/cgi-bin/env.py"]) {
      check(text.split("\n").includes(line), `shows ${line}`);
    }
    await shot(page, "cgi-env");
    expectNoProblems("env.py");
  });

  await step("CGI echo.py form", async () => {
    const res = await page.goto(`${BASE}/cgi-bin/echo.py`);
    eq(res.status(), 200, "GET status");
    await expectStyled(page, "echo.py");
    await shot(page, "cgi-echo-form");
    await page.fill("#name", "Grace <Hopper>");
    await page.fill("#message", "déjà vu & <b>bold</b> = 100%");
    const [post] = await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "POST it" }).click()]);
    eq(post.status(), 200, "POST status");
    const cells = await page.$$eval("td", (tds) => tds.map((t) => t.textContent));
    check(cells.includes("Grace <Hopper>"), "echoes the name, escaped (shown as text)");
    check(cells.includes("déjà vu & <b>bold</b> = 100%"), "echoes the message, escaped, UTF-8 intact");
    eq(await page.locator("td b").count(), 0, "no HTML injected");
    await shot(page, "cgi-echo-result");
    expectNoProblems("echo.py");
  });

  await step("CGI session.py: log in, count, log out", async () => {
    await context.clearCookies();
    await page.goto(`${BASE}/cgi-bin/session.py`);
    check((await page.locator("body").innerText()).includes("You are not logged in"), "starts logged out");
    await shot(page, "cgi-session-login");
    await page.fill("#name", "Ada");
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Log in" }).click()]);
    eq(new URL(page.url()).pathname, "/cgi-bin/session.py", "303 back to the script");
    const cookies = await context.cookies(BASE);
    const sid = cookies.find((c) => c.name === "webserv_sid");
    check(!!sid && /^[0-9a-f]{64}$/.test(sid.value), "webserv_sid cookie set");
    check(!!sid && sid.httpOnly, "cookie is HttpOnly");
    const visits = async () => Number(await page.locator("main p strong").nth(1).textContent());
    check((await page.locator("body").innerText()).includes("Welcome back, Ada!"), "welcomes Ada");
    const v1 = await visits();
    await page.reload();
    const v2 = await visits();
    await page.reload();
    const v3 = await visits();
    check(v2 === v1 + 1 && v3 === v2 + 1, `counter increases across reloads (${v1}, ${v2}, ${v3})`);
    await shot(page, "cgi-session-logged-in");
    await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Log out" }).click()]);
    check((await page.locator("body").innerText()).includes("You are not logged in"), "logged out");
    const after = (await context.cookies(BASE)).find((c) => c.name === "webserv_sid");
    check(!after, "cookie removed");
    await shot(page, "cgi-session-logged-out");
    expectNoProblems("session.py");
  });

  await step("CGI slow.py streams", async () => {
    // Read the body as it arrives: the first line must come long before the last.
    const r = await page.evaluate(async (url) => {
      const t0 = performance.now();
      const res = await fetch(url, { cache: "no-store" });
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let text = "", firstAt = null;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (firstAt === null) firstAt = performance.now() - t0;
        text += dec.decode(value, { stream: true });
      }
      return { status: res.status, text, firstAt, total: performance.now() - t0, length: res.headers.get("content-length") };
    }, `${BASE}/cgi-bin/slow.py`);
    eq(r.status, 200, "status");
    eq(r.text.trim().split("\n").length, 10, "ten lines");
    eq(r.length, null, "no Content-Length");
    check(r.firstAt < 1500 && r.total > 4000, `first bytes after ${Math.round(r.firstAt)} ms, all after ${Math.round(r.total)} ms`);
    await page.goto(`${BASE}/cgi-bin/slow.py`);
    check((await page.locator("body").innerText()).includes("line 10 of 10"), "the page shows all ten lines");
    await shot(page, "cgi-slow");
    expectNoProblems("slow.py");
  });

  await step("CGI hello.php, hello.sh, hello.pl", async () => {
    let res = await page.goto(`${BASE}/cgi-bin/hello.php?name=php`);
    eq(res.status(), 200, "hello.php status");
    check(/^Hello, php, from PHP \d/.test((await page.locator("h1").textContent()).trim()), "hello.php heading");
    await expectStyled(page, "hello.php");
    await shot(page, "cgi-hello-php");
    res = await page.goto(`${BASE}/cgi-bin/hello.sh?from=sh`);
    eq(res.status(), 200, "hello.sh status");
    const sh = await page.locator("body").innerText();
    check(sh.includes("Hello from sh!") && sh.includes("QUERY_STRING=from=sh"), "hello.sh text");
    await shot(page, "cgi-hello-sh");
    res = await page.goto(`${BASE}/cgi-bin/hello.pl?from=perl`);
    eq(res.status(), 200, "hello.pl status");
    check(/^Hello from Perl \d/.test((await page.locator("h1").textContent()).trim()), "hello.pl heading");
    check((await page.locator("body").innerText()).includes("from=perl"), "hello.pl shows the query");
    await expectStyled(page, "hello.pl");
    await shot(page, "cgi-hello-pl");
    expectNoProblems("other CGI");
  });

  await step("second virtual host", async () => {
    // The front page's status probes may still be answering when the link is clicked.
    expectedBad = new Set(["404 /missing", "418 /teapot"]);
    await page.goto(`${BASE}/`);
    const [resp] = await Promise.all([page.waitForNavigation(), page.locator("a[data-vhost]").click()]);
    eq(resp.status(), 200, `front page link to ${page.url()}`);
    eq((await page.locator("h1").textContent()).trim(), "second.localhost", "the front page link reaches the second site");
    const byPort = await page.goto(`${SECOND}/`);
    eq(byPort.status(), 200, `GET ${SECOND}/`);
    eq((await page.locator("h1").textContent()).trim(), "second.localhost", "its own port shows the second site");
    await shot(page, "vhost-second-by-port");
    const byName = `http://second.localhost:${PORT}/`;
    const res = await page.goto(byName);
    eq(res.status(), 200, `GET ${byName}`);
    eq((await page.locator("h1").textContent()).trim(), "second.localhost", "Host second.localhost shows the second site");
    await shot(page, "vhost-second-by-name");
    const back = page.getByRole("link", { name: "Back to the main site" });
    const backHref = await back.getAttribute("href");
    await back.click();
    await page.waitForLoadState();
    check((await page.title()).startsWith("webserv"), `"Back to the main site" (${backHref}) reaches the main site`);
    // And the main site stays the default for other names.
    const other = await page.request.get(`${BASE}/`, { headers: { Host: "unknown.example" } });
    check((await other.text()).includes("<h1>webserv</h1>"), "an unknown Host gets the default (main) site");
    expectNoProblems("second vhost");
  });
} finally {
  // Leave nothing behind in the upload store.
  for (const n of [fileA, fileB, putName]) {
    const r = await page.request.delete(`${BASE}/uploads/${encodeURIComponent(n)}`).catch(() => null);
    if (r && ![204, 404].includes(r.status())) console.log(`cleanup: DELETE ${n} -> ${r.status()}`);
  }
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

// Answers >= 400 the browser got that no step expected, from the access log
// (this also sees the requests Chromium makes on its own, like /favicon.ico).
if (process.env.SERVER_LOG && fs.existsSync(process.env.SERVER_LOG)) {
  section("server access log");
  const expected = [/^\/missing$/, /^\/no\/such\/page\.html$/, /^\/teapot$/, new RegExp(`^/uploads/walk-${stamp}-`)];
  const bad = fs.readFileSync(process.env.SERVER_LOG, "utf8").split("\n")
    .map((l) => l.match(/"(\S+) (\S+) HTTP\/[\d.]+" (\d{3}) /))
    .filter((m) => m && Number(m[3]) >= 400 && !expected.some((re) => re.test(m[2].split("?")[0])))
    .map((m) => `${m[1]} ${m[2]} -> ${m[3]}`);
  check(bad.length === 0, `no unexpected error answers${bad.length ? ": " + [...new Set(bad)].join(", ") : ""}`);
}

finish(SHOTS);
