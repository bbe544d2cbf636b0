// Opens Neo4j Browser in Debian's headless chromium, connects, runs one query and checks that
// every expected string appears in the result frame. Inputs come from the environment so that a
// password never reaches a command line:
//   BROWSER_URL      http://127.0.0.1:PORT/browser/
//   BOLT_ADDRESS     127.0.0.1:PORT
//   NEO4J_USER / NEO4J_PASSWORD   (empty password means "No authentication")
//   COMMANDS_JSON    a JSON array of editor commands run in order (e.g. ":param limit => 5",
//                    then the Cypher query); the expectations apply after the last one
//   EXPECT_JSON      a JSON array of strings that must appear on the page after the query
//   SCREENSHOT       path of the PNG to write
// Prints one JSON line: {"ok": bool, "missing": [...], "screenshot": path}.
import { chromium } from 'playwright-core';

const env = process.env;
const expected = JSON.parse(env.EXPECT_JSON || '[]');
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
});
let result = { ok: false, missing: expected, screenshot: env.SCREENSHOT };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(`${env.BROWSER_URL}?dbms=bolt://${env.BOLT_ADDRESS}`, { waitUntil: 'networkidle' });
  await page.waitForSelector('[data-testid="connect"]', { timeout: 60000 });
  if (env.NEO4J_PASSWORD) {
    await page.fill('[data-testid="username"]', env.NEO4J_USER || 'neo4j');
    await page.fill('[data-testid="password"]', env.NEO4J_PASSWORD);
  } else {
    const select = page.locator('[data-testid="authenticationMethod"]');
    const values = await select.locator('option').evaluateAll(
      (options) => options.map((o) => [o.value, o.textContent]));
    const noAuth = values.find(([, label]) => /no auth/i.test(label || ''));
    if (noAuth) await select.selectOption(noAuth[0]);
  }
  await page.click('[data-testid="connect"]');
  await page.waitForSelector('[data-testid="disconnectedBannerCode"]', { state: 'detached', timeout: 60000 });
  // The editor prompt names the database once the session is usable.
  await page.getByText(/^neo4j\$/).first().waitFor({ timeout: 60000 });
  await page.waitForTimeout(1000);
  const editor = page.locator('#monaco-main-editor, [data-testid="activeEditor"], .monaco-editor').first();
  for (const command of JSON.parse(env.COMMANDS_JSON || '[]')) {
    await editor.click();
    await page.keyboard.type(command, { delay: 0 });
    await page.click('[data-testid="editor-Run"]');
    await page.waitForTimeout(1000);
  }
  const deadline = Date.now() + 60000;
  let missing = expected;
  while (Date.now() < deadline) {
    const text = await page.locator('body').innerText();
    missing = expected.filter((s) => !text.includes(s));
    if (missing.length === 0) break;
    await page.waitForTimeout(500);
  }
  // Prefer the table view so the screenshot shows the rows, when the frame offers one.
  const tableButton = page.locator('[data-testid="cypherFrameSidebarTable"]').first();
  if (await tableButton.count()) await tableButton.click();
  await page.waitForTimeout(500);
  await page.screenshot({ path: env.SCREENSHOT, fullPage: false });
  result = { ok: missing.length === 0, missing, screenshot: env.SCREENSHOT };
} catch (error) {
  result.error = String(error).split('\n')[0];
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.ok ? 0 : 1);
