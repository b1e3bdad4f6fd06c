import { execFileSync } from "node:child_process";
import { APIRequestContext } from "@playwright/test";
import { adminPassword, nodeName, iscsiPort, hydrated, logIn, expect, test, allowConsoleErrors } from "./session";

// iSCSI settings in the browser: an operator turns discovery CHAP on and an
// initiator without the secret can no longer discover the targets; a
// group's session parameters are checked and saved from its page.

/** Runs iscsi-ls: whether it succeeded, and what it printed. */
function iscsiLs(url: string): [boolean, string] {
  try {
    const out = execFileSync("iscsi-ls", [url], { encoding: "utf8", timeout: 20_000, stdio: ["ignore", "pipe", "pipe"] });
    return [true, out];
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return [false, `${err.stdout ?? ""}${err.stderr ?? ""}`];
  }
}

/** Logs the admin in to `request` and creates an operator; returns its name. */
async function operator(request: APIRequestContext): Promise<string> {
  const login = await request.post("/api/v1/login", { data: { username: "admin", password: adminPassword } });
  expect(login.ok()).toBeTruthy();
  const op = `iop${Date.now() % 100000}`;
  const created = await request.post("/api/v1/users", { data: { username: op, password: "operator-pass-1", role: "operator" } });
  expect(created.status()).toBe(201);
  return op;
}

test("an operator turns discovery CHAP on and an initiator without the secret is refused", async ({ page, request }) => {
  // The form is first sent with a value the node refuses (422).
  allowConsoleErrors(page, /status of 422/);
  const op = await operator(request);
  const suffix = Date.now() % 100000;
  const chapUser = `disc${suffix}`;
  const group = `disc${suffix}`;
  const iqn = `iqn.2026-11.local.portico:${group}.${nodeName}`;
  const portal = `127.0.0.1:${iscsiPort}`;
  // A CHAP user and a group with a target on this node, through the API.
  expect((await request.post("/api/v1/chap-users", { data: { name: chapUser, secret: "discsecret12" } })).status()).toBe(201);
  const created = await request.post("/api/v1/target-groups", {
    data: { name: group, targets: [{ node: nodeName, portals: [portal] }] },
  });
  expect(created.status()).toBe(201);

  try {
    // Open discovery: any host may list the targets, and the page warns.
    const [openOk, openOut] = iscsiLs(`iscsi://${portal}`);
    console.log(`discovery open: iscsi-ls iscsi://${portal}\n${openOut}`);
    expect(openOk).toBe(true);
    expect(openOut).toContain(`Target:${iqn} Portal:${portal},`);

    await logIn(page, op, "operator-pass-1");
    await page.getByRole("link", { name: "iSCSI", exact: true }).click();
    await hydrated(page);
    await expect(page.getByTestId("discovery-open")).toContainText("Discovery is open");

    // Without a CHAP user the form says so next to the field.
    const form = page.locator("#set-discovery");
    await form.locator("select[name=chap_mode]").selectOption("one-way");
    await form.getByRole("button", { name: "Save discovery CHAP" }).click();
    await expect(page.locator('.field-error[data-field="chap.user"]')).toBeVisible();
    await form.locator("select[name=chap_user]").selectOption(chapUser);
    await form.getByRole("button", { name: "Save discovery CHAP" }).click();
    await expect(page.getByTestId("discovery-chap")).toContainText("one-way");
    await expect(page.getByTestId("discovery-chap")).toContainText(chapUser);
    await expect(page.getByTestId("discovery-open")).toHaveCount(0);

    // Applied live: without the secret refused, with it listed.
    const [noneOk, noneOut] = iscsiLs(`iscsi://${portal}`);
    console.log(`discovery CHAP on, no credentials: iscsi-ls iscsi://${portal}\n${noneOut}`);
    expect(noneOk).toBe(false);
    expect(noneOut).toContain("Authentication failure");
    const [withOk, withOut] = iscsiLs(`iscsi://${chapUser}%discsecret12@${portal}`);
    console.log(`discovery CHAP on, right secret: iscsi-ls iscsi://${chapUser}%discsecret12@${portal}\n${withOut}`);
    expect(withOk).toBe(true);
    expect(withOut).toContain(`Target:${iqn} Portal:${portal},`);

    // The CHAP user is in use: its row says so.
    await page.getByRole("link", { name: "CHAP users" }).click();
    await expect(page.locator(`tr[data-chap="${chapUser}"]`)).toContainText("discovery");
  } finally {
    // Leave discovery open for the other browser tests and a rerun.
    const reset = await request.put("/api/v1/iscsi/discovery", { data: { chap: { mode: "none" } } });
    expect(reset.ok()).toBeTruthy();
    await request.delete(`/api/v1/target-groups/${group}?force=true`);
    await request.delete(`/api/v1/chap-users/${chapUser}`);
  }
});

test("an operator tunes a group's session parameters and sees each wrong value refused", async ({ page, request }) => {
  // Each wrong value is refused by the node (422), on purpose.
  allowConsoleErrors(page, /status of 422/);
  const op = await operator(request);
  const group = `sess${Date.now() % 100000}`;
  const created = await request.post("/api/v1/target-groups", {
    data: { name: group, targets: [{ node: nodeName, portals: [`127.0.0.1:${iscsiPort}`] }] },
  });
  expect(created.status()).toBe(201);
  try {
    await logIn(page, op, "operator-pass-1");
    await page.goto(`/target-groups/${group}`);
    await hydrated(page);
    const table = page.getByTestId("session-table");
    await expect(table.locator('tr[data-setting="max_burst_length"]')).toContainText("1048576");
    await expect(page.getByText("A change reaches new sessions only")).toBeVisible();

    const form = page.locator("#set-session");
    await form.locator("input[name=max_recv_data_segment_length]").fill("100");
    await form.locator("input[name=nop_in_interval]").fill("soon");
    await form.getByRole("button", { name: "Save session parameters" }).click();
    await expect(page.locator('.field-error[data-field="nop_in_interval"]')).toBeVisible();
    await form.locator("input[name=nop_in_interval]").fill("");
    await form.getByRole("button", { name: "Save session parameters" }).click();
    await expect(page.locator('.field-error[data-field="max_recv_data_segment_length"]')).toHaveText("Must be between 512 and 1048576.");

    await form.locator("input[name=max_recv_data_segment_length]").fill("65536");
    await form.locator("select[name=header_digest]").selectOption("crc32c");
    await form.getByRole("button", { name: "Save session parameters" }).click();
    await expect(table.locator('tr[data-setting="max_recv_data_segment_length"]')).toContainText("65536");
    await expect(table.locator('tr[data-setting="header_digest"]')).toContainText("CRC32C required");
    const session = await (await request.get(`/api/v1/target-groups/${group}/session`)).json();
    expect(session.offered.max_recv_data_segment_length).toBe(65536);
    expect(session.offered.header_digest).toBe("crc32c");

    // TARGET COLD RESET is refused by default; the operator allows it.
    const privileges = page.getByTestId("privileges-table");
    await expect(privileges.locator('tr[data-privilege="target_cold_reset"]')).toContainText("refused");
    await page.locator("#set-privileges select[name=target_cold_reset]").selectOption("allow");
    await page.locator("#set-privileges").getByRole("button", { name: "Save privileges" }).click();
    await expect(privileges.locator('tr[data-privilege="target_cold_reset"] strong')).toHaveText("allowed");
  } finally {
    await request.delete(`/api/v1/target-groups/${group}?force=true`);
  }
});
