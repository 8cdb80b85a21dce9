// Browser checks of the two demos that need more than conf.d/default.conf:
//
//   TLS_URL     https://localhost:PORT of conf.d/examples/tls.conf (self-signed)
//   REDIRECT_URL http://localhost:PORT of that config's plain listener (301 to HTTPS)
//   WS_URL      http://127.0.0.1:PORT of conf.d/examples/proxy.conf, with
//               examples/ws_echo.py behind /echo
//   CHROMIUM, SHOTS as in walkthrough.mjs
//
// tests/browser/run.sh starts both servers and runs this after walkthrough.mjs.
// The self-signed certificate is accepted the way a user accepts it once
// ("proceed anyway"): the browser context ignores certificate errors, and the
// checks look at what was negotiated and shown.

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { check, eq, finish, section, step } from "./checks.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHOTS = process.env.SHOTS || path.join(HERE, "screenshots");
const TLS = process.env.TLS_URL.replace(/\/$/, "");
const REDIRECT = process.env.REDIRECT_URL.replace(/\/$/, "");
const WS = process.env.WS_URL.replace(/\/$/, "");
fs.mkdirSync(SHOTS, { recursive: true });

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "webserv-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  ignoreHTTPSErrors: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
  colorScheme: "light",
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(15000);
const pageErrors = [];
page.on("pageerror", (err) => pageErrors.push(err.message));

try {
  await step("TLS demo: the site over HTTPS", async () => {
    const res = await page.goto(`${TLS}/`);
    eq(res.status(), 200, "GET / over HTTPS");
    const security = await res.securityDetails();
    check(security !== null, "the response came over TLS");
    if (security) {
      check(/TLS 1\.[23]/.test(security.protocol), `protocol ${security.protocol}`);
      eq(security.subjectName, "localhost", "certificate subject");
    }
    check((await page.title()).startsWith("webserv"), `title "${await page.title()}"`);
    const probes = await page.locator("a[data-probe]").count();
    await page.waitForFunction((n) => document.querySelectorAll(".probe").length === n, probes);
    const red = await page.$$eval(".probe", (els) => els.filter((e) => !e.classList.contains("ok"))
      .map((e) => `${e.previousElementSibling.getAttribute("href")}=${e.textContent}`));
    check(red.length === 0, `all ${probes} status badges green over HTTPS${red.length ? " (red: " + red.join(", ") + ")" : ""}`);
    const font = await page.evaluate(() => getComputedStyle(document.body).fontFamily);
    check(/system-ui/.test(font), `stylesheet applied over HTTPS (body font ${font})`);
    const broken = await page.evaluate(() =>
      [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src));
    check(broken.length === 0, `every image loaded${broken.length ? " (broken: " + broken.join(", ") + ")" : ""}`);
    await page.screenshot({ path: path.join(SHOTS, "tls-front-page.png"), fullPage: true });
  });

  await step("TLS demo: CGI sees HTTPS", async () => {
    const res = await page.goto(`${TLS}/cgi-bin/env.py`);
    eq(res.status(), 200, "GET /cgi-bin/env.py over HTTPS");
    const text = await page.locator("body").innerText();
    check(/HTTPS\W+on/.test(text), "the script's environment shows HTTPS=on");
    check(/REQUEST_SCHEME\W+https/.test(text), "the script's environment shows REQUEST_SCHEME=https");
    await page.screenshot({ path: path.join(SHOTS, "tls-cgi-env.png"), fullPage: true });
  });

  await step("TLS demo: plain HTTP redirects to HTTPS", async () => {
    const res = await page.goto(`${REDIRECT}/index.html?x=1`);
    eq(new URL(page.url()).protocol, "https:", "the browser ended on https");
    eq(new URL(page.url()).pathname + new URL(page.url()).search, "/index.html?x=1", "path and query kept");
    eq(res.status(), 200, "the redirected page answers 200");
  });

  await step("WebSocket demo: echo through the proxy", async () => {
    const res = await page.goto(`${WS}/websocket.html`);
    eq(res.status(), 200, "GET /websocket.html");
    await page.waitForFunction(() => document.getElementById("state").textContent === "connected");
    check(true, "the socket opened (101 through the proxy)");
    for (const text of ["hello", "über ünïcødé ✓", "x".repeat(70000)]) {
      await page.fill("#text", text);
      await page.click("button");
      await page.waitForFunction((t) => document.getElementById("log").textContent.includes("< " + t), text);
      check(true, `echo of a ${text.length}-character message`);
    }
    await page.screenshot({ path: path.join(SHOTS, "websocket-echo.png") });
    check(pageErrors.length === 0, `no script errors${pageErrors.length ? ": " + pageErrors.join("; ") : ""}`);
  });
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

finish(SHOTS);
