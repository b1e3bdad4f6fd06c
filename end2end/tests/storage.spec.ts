import { execFileSync } from "node:child_process";
import { adminPassword, nodeName, iscsiPort, hydrated, logIn, expect, test, allowConsoleErrors } from "./session";

/** Runs iscsi-ls; true when it lists LUN 0. */
function iscsiLs(url: string): boolean {
  try {
    const out = execFileSync("iscsi-ls", ["-s", url], { encoding: "utf8", timeout: 20_000, stdio: ["ignore", "pipe", "pipe"] });
    return out.includes("Lun:0");
  } catch {
    return false;
  }
}

test("an operator builds a CHAP-protected target group in the browser and an initiator sees it", async ({ page, request }) => {
  // A too short CHAP secret is refused (422) on purpose.
  allowConsoleErrors(page, /status of 422/);
  // The admin creates the operator through the API.
  const login = await request.post("/api/v1/login", { data: { username: "admin", password: adminPassword } });
  expect(login.ok()).toBeTruthy();
  const op = `op${Date.now() % 100000}`;
  const created = await request.post("/api/v1/users", { data: { username: op, password: "operator-pass-1", role: "operator" } });
  expect(created.status()).toBe(201);

  await logIn(page, op, "operator-pass-1");
  const suffix = Date.now() % 100000;
  const chapUser = `esx${suffix}`;
  const volume = `vol${suffix}`;
  const group = `grp${suffix}`;

  // A CHAP user; a too short secret is refused next to its field first.
  await page.getByRole("link", { name: "CHAP users" }).click();
  await hydrated(page);
  const chapForm = page.locator("#create-chap");
  await chapForm.locator("input[name=name]").fill(chapUser);
  await chapForm.locator("input[name=secret]").fill("short");
  await chapForm.locator("input[name=secret]").evaluate((e: HTMLInputElement) => e.removeAttribute("minlength"));
  await chapForm.getByRole("button", { name: "Create CHAP user" }).click();
  await expect(page.locator('.field-error[data-field="secret"]')).toBeVisible();
  await chapForm.locator("input[name=secret]").fill("e2esecret1234");
  await chapForm.getByRole("button", { name: "Create CHAP user" }).click();
  await expect(page.locator(`tr[data-chap="${chapUser}"]`)).toBeVisible();

  // A 1 GiB volume.
  await page.getByRole("link", { name: "Volumes" }).click();
  await hydrated(page);
  const volForm = page.locator("#create-volume");
  await volForm.locator("input[name=name]").fill(volume);
  await volForm.locator("input[name=size]").fill("1GiB");
  await volForm.getByRole("button", { name: "Create volume" }).click();
  await expect(page.locator(`tr[data-volume="${volume}"]`)).toContainText("1 GiB");
  await expect(page.getByTestId("reservations")).toContainText("No initiator has registered or reserved a volume.");

  // A target group with one target on this node.
  await page.getByRole("link", { name: "Target groups" }).click();
  await hydrated(page);
  const groupForm = page.locator("#create-group");
  await groupForm.locator("input[name=name]").fill(group);
  await groupForm.locator("select[name=node]").selectOption(nodeName);
  await groupForm.locator("input[name=portals]").fill(`127.0.0.1:${iscsiPort}`);
  await groupForm.getByRole("button", { name: "Create group" }).click();
  await page.locator(`tr[data-group="/target-groups/${group}"] a`).click();
  await expect(page.getByTestId("targets-table")).toContainText(`iqn.2026-11.local.portico:${group}.${nodeName}`);
  await hydrated(page);

  // The forms offer what the node knows: nodes for a new target, with
  // their iSCSI addresses as portals, and the volumes no group exports.
  await expect(page.locator("#portal-choices option[value='127.0.0.1:3260']")).toHaveCount(1);
  await expect(page.locator("select[name=node] option", { hasText: nodeName })).toHaveCount(1);

  // Attach the volume as LUN 0, chosen from the unattached ones, then turn CHAP on.
  const attach = page.locator("#attach-lun");
  await attach.locator("select[name=volume]").selectOption(volume);
  await attach.locator("input[name=lun]").fill("0");
  await attach.getByRole("button", { name: "Attach" }).click();
  await expect(page.getByTestId("luns-table")).toContainText(volume);
  await expect(attach.locator("select[name=volume] option", { hasText: volume })).toHaveCount(0);
  await expect(page.getByTestId("targets-table")).toContainText("LUN 0");
  await expect(page.getByTestId("targets-table")).toContainText("active/optimized", { ignoreCase: true });
  const chap = page.locator("#set-chap");
  await chap.locator("select[name=chap_mode]").selectOption("one-way");
  await chap.locator("select[name=chap_user]").selectOption(chapUser);
  await chap.getByRole("button", { name: "Set CHAP" }).click();
  await expect(page.getByTestId("chap-mode")).toHaveText("one-way");

  // "Connect a host" gives this group's commands, CHAP user named, secret not shown.
  const connect = page.getByTestId("connect-host");
  await expect(connect).toContainText(`iscsiadm -m discovery -t sendtargets -p 127.0.0.1:${iscsiPort}`);
  await expect(connect).toContainText(`node.session.auth.username -v '${chapUser}'`);
  await expect(connect).toContainText(`--authname=${chapUser}`);
  await expect(connect).not.toContainText("e2esecret1234");

  // An initiator: listed with the secret, refused without it.
  const iqn = `iqn.2026-11.local.portico:${group}.${nodeName}`;
  expect(iscsiLs(`iscsi://${chapUser}%e2esecret1234@127.0.0.1:${iscsiPort}/${iqn}/0`)).toBe(true);
  expect(iscsiLs(`iscsi://127.0.0.1:${iscsiPort}/${iqn}/0`)).toBe(false);
  expect(iscsiLs(`iscsi://${chapUser}%wrongsecret12@127.0.0.1:${iscsiPort}/${iqn}/0`)).toBe(false);
});
