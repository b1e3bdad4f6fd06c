import { ChildProcess, spawn } from "node:child_process";
import { adminPassword, nodeName, iscsiPort, hydrated, logIn, expect, test } from "./session";

// Every page of the dashboard, loaded 10 times each with live data present
// (a volume under I/O from an initiator, a group with a target, a LUN, an
// ACL rule, CHAP users, a token, audit entries): the browser console must
// stay clean on every load. A hydration mismatch shows up here as a panic
// in the console, and the shared page fixture fails the test on it.

const loads = 10;

test("every page loads cleanly 10 times with live data present", async ({ page }) => {
  test.setTimeout(300_000);
  const suffix = `${Date.now() % 100000}`;
  const volume = `pages${suffix}`;
  const group = `pages${suffix}`;
  const chapUser = `pages${suffix}`;
  const iqn = `iqn.2026-11.local.portico:${group}.${nodeName}`;
  const portal = `127.0.0.1:${iscsiPort}`;

  await logIn(page, "admin", adminPassword);
  const api = page.request;
  expect((await api.post("/api/v1/chap-users", { data: { name: chapUser, secret: "pagessecret12" } })).status()).toBe(201);
  expect((await api.post("/api/v1/volumes", { data: { name: volume, size: "64MiB" } })).status()).toBe(201);
  expect(
    (await api.post("/api/v1/target-groups", { data: { name: group, targets: [{ node: nodeName, portals: [portal] }] } })).status(),
  ).toBe(201);
  expect((await api.post(`/api/v1/target-groups/${group}/luns`, { data: { volume, lun: 0 } })).status()).toBe(201);
  const rule = await api.post(`/api/v1/target-groups/${group}/acl`, {
    data: { initiator: "iqn.2026-11.local.test:pages-host", luns: [0] },
  });
  expect(rule.status()).toBe(201);
  expect((await api.post("/api/v1/tokens", { data: { name: `pages${suffix}` } })).status()).toBe(201);

  // An initiator reads the LUN all along, so that sessions and figures are live.
  let load: ChildProcess | undefined;
  try {
    load = spawn("iscsi-perf", ["-i", "iqn.2026-11.local.test:pages-host", "-b", "8", "-m", "4", `iscsi://${portal}/${iqn}/0`], { stdio: "ignore" });
    await expect
      .poll(async () => (await (await api.get(`/api/v1/target-groups/${group}/connections`)).json()).length, { timeout: 15_000 })
      .toBeGreaterThan(0);

    const pages = [
      "/",
      "/volumes",
      "/target-groups",
      `/target-groups/${group}`,
      "/chap-users",
      "/iscsi",
      "/nodes",
      "/users",
      "/tokens",
      "/audit",
    ];
    for (const path of pages) {
      for (let i = 0; i < loads; i++) {
        await page.goto(path);
        await hydrated(page);
        await expect(page.locator("main h1, main h2").first()).toBeVisible();
      }
    }

    // A wide and a narrow window: nothing sticks out of the page or of a
    // card (a wide table scrolls inside its own frame). Screenshots of each
    // are kept in the test's output directory.
    for (const width of [1280, 420]) {
      await page.setViewportSize({ width, height: 900 });
      for (const path of pages) {
        await page.goto(path);
        await hydrated(page);
        await expect(page.locator("main h1, main h2").first()).toBeVisible();
        const overflow = await page.evaluate(() => {
          const out: string[] = [];
          const root = document.documentElement;
          if (root.scrollWidth > root.clientWidth + 1) out.push(`the page is ${root.scrollWidth}px wide`);
          document.querySelectorAll<HTMLElement>("main .card, main .table-wrap, main .page-head").forEach((el) => {
            const wrap = el.classList.contains("table-wrap");
            const box = el.getBoundingClientRect();
            if (box.right > root.clientWidth + 1) out.push(`${el.className} ends at ${Math.round(box.right)}px`);
            if (!wrap && el.scrollWidth > el.clientWidth + 1) {
              out.push(`${el.className} "${(el.querySelector("h2,h1")?.textContent ?? "").trim()}" holds ${el.scrollWidth}px in ${el.clientWidth}px`);
            }
          });
          return out;
        });
        expect(overflow, `${path} at ${width}px`).toEqual([]);
        const name = path === "/" ? "overview" : path.slice(1).replace(/\//g, "-");
        await page.screenshot({ path: test.info().outputPath(`${width}-${name}.png`), fullPage: true });
      }
    }
  } finally {
    load?.kill("SIGTERM");
    await api.delete(`/api/v1/target-groups/${group}?force=true`);
    await api.delete(`/api/v1/volumes/${volume}`);
    await api.delete(`/api/v1/chap-users/${chapUser}`);
  }
});
