import { expect, Page } from "@playwright/test";

// What every browser test shares: the node it runs against (set by
// scripts/test-e2e.sh) and how a user gets in.

export const adminPassword = process.env.PORTICO_ADMIN_PASSWORD ?? "";
export const nodeName = process.env.PORTICO_NODE_NAME ?? "e2e-node";
export const iscsiPort = process.env.PORTICO_ISCSI_PORT ?? "3260";

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
