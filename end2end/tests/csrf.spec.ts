import { createServer, Server } from "node:http";
import { AddressInfo } from "node:net";
import { adminPassword, hydrated, expect, test, allowConsoleErrors } from "./session";

// A cross-site request forgery from a page that another program serves on
// another port of the node's host. Ports do not count for SameSite, so the
// browser sends the administrator's SameSite=Strict session cookie along;
// the node must refuse the requests by their origin.

/** Serves `html` on 127.0.0.1 at a free port; resolves to the server and its origin. */
async function serve(html: string): Promise<[Server, string]> {
  const server = createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(html);
  });
  await new Promise<void>((ready) => server.listen(0, "127.0.0.1", ready));
  const { port } = server.address() as AddressInfo;
  return [server, `http://127.0.0.1:${port}`];
}

test("a page served on another port cannot make changes with the administrator's session", async ({ page, baseURL }) => {
  // What the browser prints when the node refuses the forged requests
  // (403) and will not be framed (X-Frame-Options), and the blocked answers.
  allowConsoleErrors(page, /status of 403/, /X-Frame-Options/, /ERR_BLOCKED_BY_RESPONSE/);
  expect(adminPassword, "PORTICO_ADMIN_PASSWORD must be set").not.toBe("");
  const node = new URL(baseURL!).origin;
  const suffix = Date.now() % 100000;
  const victimUser = `csrf${suffix}`;
  const group = `csrfgrp${suffix}`;

  // The administrator is logged in to the dashboard in this browser.
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("User name", { exact: true }).fill("admin");
  await page.getByLabel("Password", { exact: true }).fill(adminPassword);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByTestId("current-user")).toHaveText("admin");
  // A running target group the attack will try to stop (made through the
  // API with the same session; scripts send no Origin).
  const made = await page.request.post("/api/v1/target-groups", { data: { name: group, targets: [] } });
  expect(made.status()).toBe(201);

  // The attacker's page: two forms that post as soon as it loads, one to a
  // server function (form encoded, as Leptos forms used to post) and one to
  // the REST API (a route that needs no body), each into its own frame.
  const attack = `<!doctype html><html><body>
    <iframe name="f1"></iframe><iframe name="f2"></iframe>
    <form id="a1" method="post" target="f1" action="${node}/rpc/users/create">
      <input name="username" value="${victimUser}"><input name="password" value="attacker-pass-1">
      <input name="role" value="admin">
    </form>
    <form id="a2" method="post" target="f2" action="${node}/api/v1/target-groups/${group}/stop"></form>
    <script>document.getElementById("a1").submit(); document.getElementById("a2").submit();</script>
  </body></html>`;
  const [server, attackerOrigin] = await serve(attack);
  try {
    expect(attackerOrigin).not.toBe(node);
    const answers = ["/rpc/users/create", `/api/v1/target-groups/${group}/stop`].map((path) =>
      page.waitForResponse((r) => r.url() === `${node}${path}` && r.request().method() === "POST"),
    );
    await page.goto(attackerOrigin);
    for (const answer of await Promise.all(answers)) {
      // The browser did send the request, with the session cookie …
      expect(await answer.request().headerValue("cookie")).toContain("portico_session=");
      // … and the node refused it (the JSON error's text is in the node's
      // log; the frame shows Chromium's page, as the node forbids framing).
      expect(answer.status()).toBe(403);
      expect(await answer.headerValue("content-type")).toContain("application/json");
    }
  } finally {
    // Leave the attacker's page before its server goes: the browser may
    // still ask it for something (its icon), and a refused connection is a
    // console error.
    await page.goto("about:blank");
    server.close();
  }

  // Nothing changed.
  const users = await page.request.get("/api/v1/users");
  expect(users.status()).toBe(200);
  expect((await users.json()).map((u: { username: string }) => u.username)).not.toContain(victimUser);
  const g = await page.request.get(`/api/v1/target-groups/${group}`);
  expect((await g.json()).state).toBe("running");
  const audit = await page.request.get("/api/v1/audit?per_page=50");
  const actions = (await audit.json()).entries.map((e: { action: string; object: string }) => `${e.action} ${e.object}`);
  expect(actions).not.toContain(`user.create user/${victimUser}`);
});
