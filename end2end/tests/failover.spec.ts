import { adminPassword, nodeName, iscsiPort, hydrated, logIn, expect, test } from "./session";

// One node cannot keep a second copy, so a volume here has one path that
// cannot move: its panel says so, offers no move, its timeline and its
// group's are empty, and the group page's live path states keep it
// Active/Optimized.

test("a volume with one copy offers no path move, its timeline and its group's are empty, and its live path state stays Active/Optimized", async ({ page, request }) => {
  const login = await request.post("/api/v1/login", { data: { username: "admin", password: adminPassword } });
  expect(login.ok()).toBeTruthy();
  const suffix = Date.now() % 100000;
  const op = `fo${suffix}`;
  const volume = `fo${suffix}`;
  const group = `fo${suffix}`;
  expect((await request.post("/api/v1/users", { data: { username: op, password: "operator-pass-1", role: "operator" } })).status()).toBe(201);
  expect((await request.post("/api/v1/volumes", { data: { name: volume, size: "64MiB" } })).status()).toBe(201);
  const created = await request.post("/api/v1/target-groups", {
    data: { name: group, targets: [{ node: nodeName, portals: [`127.0.0.1:${iscsiPort}`] }] },
  });
  expect(created.status()).toBe(201);
  expect((await request.post(`/api/v1/target-groups/${group}/luns`, { data: { volume, lun: 0 } })).status()).toBe(201);

  await logIn(page, op, "operator-pass-1");
  await page.goto("/volumes");
  await hydrated(page);
  await page.locator(`tr[data-volume="${volume}"]`).getByRole("button", { name: "Paths and failover" }).click();
  const panel = page.locator(`tr[data-volume-details="${volume}"]`);
  await expect(panel.getByTestId("paths-state")).toContainText(`One copy, on ${nodeName}`);
  await expect(panel.getByTestId("moves-empty")).toContainText("Its primary has not moved");
  await expect(panel.getByRole("button", { name: "Move path" })).toHaveCount(0);
  await expect(panel.getByRole("button", { name: /automatic failback/ })).toHaveCount(0);

  await page.goto(`/target-groups/${group}`);
  await hydrated(page);
  await expect(page.getByTestId("group-moves")).toContainText("Failover timeline");
  await expect(page.getByTestId("group-moves").getByTestId("moves-empty")).toContainText("No LUN's path has moved");

  // The path states are read again every 3 s, and only they are drawn
  // again: the one target stays LUN 0's Active/Optimized path, and a form
  // being filled in keeps what was typed across two refreshes.
  const states = page.getByTestId("targets-table").getByTestId("path-states");
  await expect(states).toHaveText("LUN 0 Active/Optimized");
  await expect(page.getByTestId("paths-live")).toHaveText("Path states refresh every 3 s.");
  const typed = page.locator("input[name=iqn_suffix]");
  await typed.fill("typed-before-refresh");
  for (let i = 0; i < 2; i++) {
    const refresh = await page.waitForResponse((r) => r.url().includes("/rpc/storage/groups/paths"));
    expect(refresh.status()).toBe(200);
  }
  await expect(states).toHaveText("LUN 0 Active/Optimized");
  await expect(page.getByTestId("paths-live")).toHaveText("Path states refresh every 3 s.");
  await expect(typed).toHaveValue("typed-before-refresh");
});
