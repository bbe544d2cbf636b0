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
import { connect, launch, typeAndRun } from './connect.mjs';

const env = process.env;
const expected = JSON.parse(env.EXPECT_JSON || '[]');
const browser = await launch(env);
let result = { ok: false, missing: expected, screenshot: env.SCREENSHOT };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await connect(page, env);
  for (const command of JSON.parse(env.COMMANDS_JSON || '[]')) {
    await typeAndRun(page, command);
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
