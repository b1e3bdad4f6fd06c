import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { Page } from "@playwright/test";
import { adminPassword, hydrated, logIn, expect, test } from "./session";

// A second node joins the node under test (scripts/test-e2e.sh starts it
// with a cluster address) with a join token an admin created on the Nodes
// page; the page then shows both nodes and their places in the cluster, an
// unused token is revoked there, a target group gets a target on each
// node through its form, and a volume made with two copies in the Volumes
// form shows its copy on the second node, in sync. Exported by a group
// with a target on each node, its Active/Optimized path moves to node 2
// from the volume's move form, and the group page, open in another tab,
// shows the two paths swap states without being reloaded.

const portico = process.env.PORTICO_BIN ?? "";
const member = process.env.PORTICO_CLUSTER_ADDR ?? "";
const siteRoot = process.env.PORTICO_SITE_ROOT ?? "";

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, host, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

test("an admin adds a node with a join token from the Nodes page, both nodes are listed, and a group gets a target on each", async ({ page }) => {
  expect(portico, "PORTICO_BIN names the binary").not.toBe("");
  expect(member, "the node under test serves the cluster channel").not.toBe("");
  await logIn(page, "admin", adminPassword);
  await page.getByRole("link", { name: "Nodes" }).click();
  await hydrated(page);
  const card = page.getByTestId("join-token");
  await card.getByRole("button", { name: "Create a join token" }).click();
  const command = await card.locator("pre").textContent();
  const token = /PORTICO_JOIN_TOKEN=(\S+)/.exec(command ?? "")?.[1] ?? "";
  expect(token).toMatch(/^[0-9a-f]{64}\.[0-9a-f]{16}\.[0-9a-f]{64}$/);
  expect(command).toContain(`--join https://${member}`);
  // The token waits in the list of unused ones, by its id (never its secret).
  const tokenId = token.split(".")[1];
  await expect(card.getByTestId("join-tokens")).toContainText(tokenId);
  await expect(card.getByTestId("join-tokens")).not.toContainText(token.split(".")[2]);

  const host = "127.0.0.2";
  const [http, cluster, replication] = [await freePort(host), await freePort(host), await freePort(host)];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portico-e2e-node2-"));
  let node: ChildProcess | undefined;
  let log = "";
  try {
    node = spawn(
      portico,
      ["serve", "--http", `${host}:${http}`, "--data-dir", path.join(dir, "data"), "--node-name", "e2e-node2",
        "--cluster-addr", `${host}:${cluster}`, "--replication-addr", `${host}:${replication}`,
        "--join", `https://${member}`, "--site-root", siteRoot],
      { env: { ...process.env, PORTICO_JOIN_TOKEN: token, PORTICO_ADMIN_PASSWORD: adminPassword } },
    );
    node.stdout?.on("data", (d) => (log += d));
    node.stderr?.on("data", (d) => (log += d));
    await expect
      .poll(async () => fetch(`http://${host}:${http}/api/v1/openapi.json`).then((r) => r.status).catch(() => 0), {
        timeout: 30_000,
        message: "the second node serves once it has joined",
      })
      .toBe(200);

    await page.reload();
    await hydrated(page);
    const second = page.locator("section.card", { has: page.getByRole("heading", { name: /e2e-node2/ }) });
    await expect(second).toContainText("Raft node 2");
    await expect(second).toContainText(`cluster address ${host}:${cluster}`);
    const first = page.locator("section.card", { has: page.getByRole("heading", { name: /this node/ }) });
    await expect(first).toContainText("Raft node 1 · leader");
    // The new node is a voter; the leader sees it answer, and after 10 s
    // of steady answers calls it online.
    await expect(second).toContainText("follower");
    await expect
      .poll(async () => (await page.reload(), await second.locator(".badge").first().textContent()), { timeout: 25_000 })
      .toBe("online");

    // The overview shows the cluster's health at a glance.
    const nodes = (await (await page.request.get("/api/v1/nodes")).json()) as { name: string }[];
    const firstName = nodes.map((n) => n.name).find((n) => n !== "e2e-node2") ?? "";
    await page.goto("/");
    await hydrated(page);
    await expect(page.getByTestId("cluster-health")).toContainText("2 of 2 nodes online");
    await expect(page.getByTestId("cluster-health")).toContainText(`leader ${firstName}`);
    await page.getByRole("link", { name: "Nodes" }).click();
    await hydrated(page);

    // Spent, the token is no longer listed. Another one, revoked, goes too.
    await expect(page.getByTestId("join-token")).not.toContainText(tokenId);
    await card.getByRole("button", { name: "Create a join token" }).click();
    const other = /PORTICO_JOIN_TOKEN=[0-9a-f]+\.([0-9a-f]{16})\./.exec((await card.locator("pre").textContent()) ?? "")?.[1] ?? "";
    expect(other).toMatch(/^[0-9a-f]{16}$/);
    const row = card.getByTestId("join-tokens").locator("tr", { hasText: other });
    await row.getByRole("button", { name: "Revoke" }).click();
    await expect(card.getByTestId("join-tokens")).toHaveCount(0);
    await expect(card).toContainText("No join token is waiting to be used.");

    // A target group with a target on each node, added in the group's form.
    const group = `two${Date.now() % 100000}`;
    expect((await page.request.post("/api/v1/target-groups", { data: { name: group, targets: [] } })).status()).toBe(201);
    try {
      await page.goto(`/target-groups/${group}`);
      await hydrated(page);
      for (const node of [firstName, "e2e-node2"]) {
        const form = page.locator("form", { has: page.getByRole("button", { name: "Add target" }) });
        await form.locator('select[name="node"]').selectOption(node);
        await form.locator('input[name="portals"]').fill(`127.0.0.1:${await freePort("127.0.0.1")}`);
        await form.getByRole("button", { name: "Add target" }).click();
        await expect(page.getByTestId("targets-table")).toContainText(`iqn.2026-11.local.portico:${group}.${node}`);
      }
      await expect(page.getByTestId("targets-table").locator("tbody tr")).toHaveCount(2);
    } finally {
      expect((await page.request.delete(`/api/v1/target-groups/${group}?force=true`)).status()).toBe(204);
    }

    // A volume with two copies: its primary here, the other on node 2.
    const volume = `copies${Date.now() % 100000}`;
    await page.getByRole("link", { name: "Volumes" }).click();
    await hydrated(page);
    const volumeForm = page.locator("#create-volume");
    await volumeForm.locator('input[name="name"]').fill(volume);
    await volumeForm.locator('input[name="size"]').fill("16MiB");
    await volumeForm.locator('select[name="node"]').selectOption(firstName);
    await volumeForm.locator('select[name="replicas"]').selectOption("2");
    await volumeForm.getByRole("button", { name: "Create volume" }).click();
    const volumeRow = page.locator(`tr[data-volume="${volume}"]`);
    await expect(volumeRow.getByTestId("volume-node")).toContainText(`${firstName} (primary)`);
    try {
      await expect
        .poll(async () => (await page.reload(), await volumeRow.getByTestId("volume-copy").textContent()), { timeout: 20_000 })
        .toContain("e2e-node2 · in sync");
      await expect(volumeRow.locator(".badge").first()).toHaveText("healthy");
      await pathMovesLive(page, volume, firstName);
    } finally {
      expect((await page.request.delete(`/api/v1/volumes/${volume}`)).status()).toBe(204);
    }

    // Removed again while it runs, so that the node under test is a
    // cluster of one for the tests that follow.
    await page.getByRole("link", { name: "Nodes" }).click();
    await hydrated(page);
    page.once("dialog", (d) => d.accept());
    await second.getByRole("button", { name: "Remove from the cluster" }).click();
    await expect(page.getByRole("heading", { name: /e2e-node2/ })).toHaveCount(0);
    await page.reload();
    await hydrated(page);
    await expect(page.getByRole("heading", { name: /e2e-node2/ })).toHaveCount(0);
  } catch (e) {
    console.log(`---- second node log ----\n${log}`);
    await page.request.delete("/api/v1/nodes/e2e-node2").catch(() => undefined);
    throw e;
  } finally {
    node?.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * `volume` (primary on `first`, an in-sync copy on e2e-node2) as LUN 0 of
 * a group with a target on each node: the group page shows node 1's path
 * Active/Optimized and node 2's Standby, an operator moves the path to
 * node 2 in the volume's move form in another tab, and the group page,
 * left as it is, shows the states swap. The group is deleted afterwards.
 */
async function pathMovesLive(page: Page, volume: string, first: string) {
  const group = `live${Date.now() % 100000}`;
  const targets = [];
  for (const node of [first, "e2e-node2"]) targets.push({ node, portals: [`127.0.0.1:${await freePort("127.0.0.1")}`] });
  expect((await page.request.post("/api/v1/target-groups", { data: { name: group, targets } })).status()).toBe(201);
  try {
    expect((await page.request.post(`/api/v1/target-groups/${group}/luns`, { data: { volume, lun: 0 } })).status()).toBe(201);
    await page.goto(`/target-groups/${group}`);
    await hydrated(page);
    const state = (node: string) =>
      page
        .getByTestId("targets-table")
        .locator("tbody tr")
        .filter({ has: page.locator("code", { hasText: new RegExp(`:${group}\\.${node}$`) }) })
        .getByTestId("path-states");
    await expect(state(first)).toHaveText("LUN 0 Active/Optimized");
    await expect(state("e2e-node2")).toHaveText("LUN 0 Standby");

    // The move, in a second tab whose console is watched as this one's.
    const mover = await page.context().newPage();
    const problems: string[] = [];
    mover.on("console", (m) => m.type() === "error" && problems.push(m.text()));
    mover.on("pageerror", (e) => problems.push(e.message));
    try {
      await mover.goto("/volumes");
      await hydrated(mover);
      await mover.locator(`tr[data-volume="${volume}"]`).getByRole("button", { name: "Paths and failover" }).click();
      const panel = mover.locator(`tr[data-volume-details="${volume}"]`);
      await expect(panel.getByTestId("paths-state")).toContainText(`Primary (Active/Optimized path): ${first}`);
      await panel.getByLabel("Move the path to").selectOption("e2e-node2");
      mover.once("dialog", (d) => d.accept());
      await panel.getByRole("button", { name: "Move path" }).click();
      await expect(panel.getByRole("status")).toContainText("Switchover done: e2e-node2 holds the primary now");
      expect(problems, "the mover's console stays clean").toEqual([]);
    } finally {
      await mover.close();
    }

    // The group page was not reloaded: its live path states changed.
    await expect(state("e2e-node2")).toHaveText("LUN 0 Active/Optimized", { timeout: 10_000 });
    await expect(state(first)).toHaveText("LUN 0 Standby");
    // The timeline, read again every 10 s, lists the switchover.
    const moved = page.getByTestId("group-moves").getByTestId("moves-table").locator("tbody tr", { hasText: volume });
    await expect(moved).toContainText(`${first} → e2e-node2`, { timeout: 15_000 });
    await expect(moved).toContainText("switchover");

    // The other paths made Active/Non-optimized from the group page: node
    // 1's path, which refused I/O, now serves it through node 2.
    await expect(page.getByTestId("other-paths")).toContainText("Other paths: Standby");
    await page.locator("#other-paths").getByLabel("Other paths").selectOption("active-non-optimized");
    await page.locator("#other-paths").getByRole("button", { name: "Save" }).click();
    await expect(page.getByTestId("other-paths")).toContainText("Other paths: Active/Non-optimized");
    await expect(state(first)).toHaveText("LUN 0 Active/Non-optimized", { timeout: 10_000 });
    await expect(state("e2e-node2")).toHaveText("LUN 0 Active/Optimized");
  } finally {
    expect((await page.request.delete(`/api/v1/target-groups/${group}?force=true`)).status()).toBe(204);
  }
}
