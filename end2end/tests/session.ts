import { expect, Page, test as base } from "@playwright/test";

// What every browser test shares: the node it runs against (set by
// scripts/test-e2e.sh), how a user gets in, and a browser console that must
// stay clean.

export const adminPassword = process.env.PORTICO_ADMIN_PASSWORD ?? "";
export const nodeName = process.env.PORTICO_NODE_NAME ?? "e2e-node";
export const iscsiPort = process.env.PORTICO_ISCSI_PORT ?? "3260";

const allowed = new WeakMap<Page, RegExp[]>();

/**
 * A test that provokes a refusal on purpose (a wrong value sent to the
 * server) names the console line the browser prints for it; anything else
 * still fails the test.
 */
export function allowConsoleErrors(page: Page, ...patterns: RegExp[]) {
  allowed.set(page, [...(allowed.get(page) ?? []), ...patterns]);
}

/**
 * Every test's page: any browser console error, uncaught exception (a
 * hydration panic among them), failed request or answer of 5xx fails the
 * test when it ends. A request cut short because the page moved on
 * (net::ERR_ABORTED) is normal navigation, not a failure.
 */
export const test = base.extend({
  page: async ({ page }, use) => {
    const problems: string[] = [];
    const note = (line: string) => {
      if (!(allowed.get(page) ?? []).some((p) => p.test(line))) problems.push(line);
    };
    page.on("console", (m) => {
      if (m.type() === "error") note(`console error at ${page.url()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => note(`uncaught at ${page.url()}: ${e.message}`));
    page.on("requestfailed", (r) => {
      const why = r.failure()?.errorText ?? "";
      if (why !== "net::ERR_ABORTED") note(`request failed: ${r.method()} ${r.url()}: ${why}`);
    });
    page.on("response", (r) => {
      if (r.status() >= 500) note(`answer ${r.status()}: ${r.request().method()} ${r.url()}`);
    });
    await use(page);
    expect(problems, "the browser console and network stay clean").toEqual([]);
  },
});

export { expect };

/** Clicks before hydration are lost: wait for the marker the hydrated app sets. */
export async function hydrated(page: Page) {
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
}

export async function logIn(page: Page, username: string, password: string) {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("User name", { exact: true }).fill(username);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("current-user")).toHaveText(username);
}
