import { adminPassword, hydrated, logIn, expect, test } from "./session";

test("an operator chooses a volume's write-cache policy, is warned about write-back, and changes it live", async ({
  page,
  request,
}) => {
  const login = await request.post("/api/v1/login", { data: { username: "admin", password: adminPassword } });
  expect(login.ok()).toBeTruthy();
  const op = `wc${Date.now() % 100000}`;
  const created = await request.post("/api/v1/users", { data: { username: op, password: "operator-pass-1", role: "operator" } });
  expect(created.status()).toBe(201);

  await logIn(page, op, "operator-pass-1");

  await page.getByRole("link", { name: "Volumes" }).click();
  await hydrated(page);
  const form = page.locator("#create-volume");
  const volume = `cache${Date.now() % 100000}`;
  await form.locator("input[name=name]").fill(volume);
  await form.locator("input[name=size]").fill("64MiB");
  // Durable by default; write-back comes with its warning.
  await expect(form.locator("select[name=write_cache]")).toHaveValue("write-through");
  await expect(form.getByRole("note")).toHaveCount(0);
  await form.locator("select[name=write_cache]").selectOption("write-back");
  await expect(form.getByRole("note")).toContainText("VMware ESXi does not flush");
  await form.getByRole("button", { name: "Create volume" }).click();

  const row = page.locator(`tr[data-volume="${volume}"]`);
  await expect(row.getByTestId("write-cache")).toContainText("write-back");
  await expect(row.getByTestId("write-cache")).toContainText("initiators see WCE on");

  // Back to write-through, live.
  await row.getByRole("button", { name: "Grow / limits" }).click();
  await row.locator("select[name=write_cache]").selectOption("write-through");
  await row.getByRole("button", { name: "Apply" }).click();
  await expect(row.getByTestId("write-cache")).toContainText("write-through");
  await expect(row.getByTestId("write-cache")).toContainText("initiators see WCE off");

  const api = await request.get(`/api/v1/volumes/${volume}`);
  expect(await api.json()).toMatchObject({ write_cache: "write-through", wce: false });
});
