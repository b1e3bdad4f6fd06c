import { Page } from "@playwright/test";
import { adminPassword, hydrated, logIn, expect, test, allowConsoleErrors } from "./session";

async function logOut(page: Page) {
  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page).toHaveURL(/\/login$/);
}

test("an admin creates a viewer, and the viewer cannot make changes", async ({ page }) => {
  // A wrong value (422) and the viewer's attempted change (403) are refused on purpose.
  allowConsoleErrors(page, /status of 422/, /status of 403/);
  expect(adminPassword, "PORTICO_ADMIN_PASSWORD must be set").not.toBe("");
  const viewer = `viewer${Date.now() % 100000}`;
  const viewerPassword = "viewer-password-1";

  // Anonymous visitors are sent to the login page.
  await page.goto("/");
  await expect(page).toHaveURL(/\/login$/);

  await logIn(page, "admin", adminPassword);
  await expect(page.getByTestId("node-name")).not.toBeEmpty();

  await page.getByRole("link", { name: "Users", exact: true }).click();
  await expect(page).toHaveURL(/\/users$/);
  await hydrated(page);
  const form = page.locator("#create-user");
  await form.getByLabel("User name").fill(viewer);
  await form.getByLabel("Password").fill(viewerPassword);
  await form.getByLabel("Role").selectOption("viewer");
  await form.getByRole("button", { name: "Create user" }).click();
  const row = page.locator(`tr[data-user="${viewer}"]`);
  await expect(row).toBeVisible();
  await expect(row).toContainText("viewer");

  // A server-side validation error is shown next to its field.
  await form.getByLabel("User name").fill("Not Valid");
  await form.getByLabel("Password").fill("long-enough-password");
  await form.getByRole("button", { name: "Create user" }).click();
  await expect(page.locator('.field-error[data-field="username"]')).toBeVisible();

  await logOut(page);

  await logIn(page, viewer, viewerPassword);
  // The viewer is not offered the Users page …
  await expect(page.getByRole("link", { name: "Users", exact: true })).toHaveCount(0);
  // … and the server refuses it when asked directly.
  await page.goto("/users");
  await expect(page.getByRole("alert")).toContainText("does not allow");

  // A change attempted from the viewer's session is refused with 403
  // (server functions take JSON).
  const response = await page.request.post("/rpc/users/create", {
    data: { username: "sneaky", password: "sneaky-password", role: "admin" },
  });
  expect(response.status()).toBe(403);
  expect(await response.text()).toContain("does not allow");

  // The refusal is in the audit log.
  await page.goto("/audit");
  await expect(page.getByTestId("audit-table")).toContainText("denied");
});
