import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { adminPassword, hydrated, logIn, expect, test } from "./session";

// A second node joins the node under test (scripts/test-e2e.sh starts it
// with a cluster address) with a join token an admin created on the Nodes
// page; the page then shows both nodes and their places in the cluster.

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

test("an admin adds a node with a join token from the Nodes page, and both nodes are listed", async ({ page }) => {
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

  const host = "127.0.0.2";
  const [http, cluster] = [await freePort(host), await freePort(host)];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portico-e2e-node2-"));
  let node: ChildProcess | undefined;
  let log = "";
  try {
    node = spawn(
      portico,
      ["serve", "--http", `${host}:${http}`, "--data-dir", path.join(dir, "data"), "--node-name", "e2e-node2",
        "--cluster-addr", `${host}:${cluster}`, "--join", `https://${member}`, "--site-root", siteRoot],
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

    // Removed again while it runs, so that the node under test is a
    // cluster of one for the tests that follow.
    const removed = await page.request.delete("/api/v1/nodes/e2e-node2");
    expect(removed.status()).toBe(204);
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
