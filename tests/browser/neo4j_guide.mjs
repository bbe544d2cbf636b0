// Opens Neo4j Browser in Debian's headless chromium on a server started by `linker neo4j start`,
// checks that the server's post-connect commands applied linker's style and opened its guide,
// runs the guide's steps by clicking them (the parameters link, then the query into the editor,
// then Run), and reads the drawn graph of the last step from the page. Environment:
//   BROWSER_URL, BOLT_ADDRESS, NEO4J_USER / NEO4J_PASSWORD   (see connect.mjs)
//   STEPS_JSON       the guide steps to run, by query name, in order (e.g. ["top_clusters"])
//   EXPECT_JSON      {"<step>": ["text", ...]}: strings that must appear after a step
//   COMMANDS_JSON    editor commands run after the steps (e.g. ":param account_id => 'a'",
//                    then a query); the graph is read after the last one
//   SHOTS_DIR        where the screenshots go: guide.png, <step>.png, graph.png
// Prints one JSON line: {"ok", "guide_opened", "style_frame", "missing", "nodes": [{caption,
// fill, labels}], "shots": [...], "error"?}. "nodes" are the SVG nodes of the newest frame.
import { connect, launch, typeAndRun } from './connect.mjs';

const env = process.env;
const steps = JSON.parse(env.STEPS_JSON || '[]');
const expect = JSON.parse(env.EXPECT_JSON || '{}');
const shots = [];
const result = { ok: false, guide_opened: false, style_frame: '', missing: {}, nodes: [], shots };
const browser = await launch(env);

async function waitForText(page, wanted, ms = 60000) {
  const deadline = Date.now() + ms;
  let missing = wanted;
  while (Date.now() < deadline) {
    const text = await page.locator('body').innerText();
    missing = wanted.filter((s) => !text.includes(s));
    if (missing.length === 0) break;
    await page.waitForTimeout(500);
  }
  return missing;
}

async function shot(page, name) {
  const path = `${env.SHOTS_DIR}/${name}.png`;
  await page.screenshot({ path, fullPage: false });
  shots.push(path);
}

// The guide frame: the newest frame whose command is the :play of linker's guide.
function guideFrame(page) {
  return page.locator('article', { has: page.locator('pre[data-linker-query]') }).first();
}

async function showSlideOf(page, step) {
  const frame = guideFrame(page);
  for (let i = 0; i < 10; i++) {
    if (await frame.locator(`pre[data-linker-query="${step}"]`).count()) return;
    await frame.locator('[data-testid="nextSlide"]').click();
    await page.waitForTimeout(300);
  }
  throw new Error(`no guide slide runs ${step}`);
}

// Let a graph's force layout settle, then fit it into its frame (nothing to do for a table).
async function settle(page) {
  await page.waitForTimeout(4000);
  const fit = page.locator('[aria-label="zoom-to-fit"]').first();
  if (await fit.count()) {
    await fit.click();
    await page.waitForTimeout(1500);
  }
}

async function readGraph(page) {
  // The stream shows the newest frame first: read the first SVG that has nodes.
  return page.evaluate(() => {
    const svg = [...document.querySelectorAll('svg')].find((s) => s.querySelector('g.node'));
    if (!svg) return [];
    return [...svg.querySelectorAll('g.node')].map((g) => ({
      caption: [...g.querySelectorAll('text')].map((t) => t.textContent).join(''),
      fill: (g.querySelector('circle.b-outline') || g.querySelector('circle'))?.getAttribute('fill'),
    }));
  });
}

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await connect(page, env);
  await guideFrame(page).waitFor({ timeout: 60000 });
  result.guide_opened = true;
  const styleFrame = page.locator('article', { hasText: ':style http' }).first();
  result.style_frame = await styleFrame.innerText();
  await shot(page, 'guide');
  for (const step of steps) {
    await showSlideOf(page, step);
    const frame = guideFrame(page);
    await frame.locator(`[data-linker-step="${step}-params"]`).click();
    await page.waitForTimeout(800);
    await frame.locator(`pre[data-linker-query="${step}"]`).click();
    await page.waitForTimeout(500);
    await page.click('[data-testid="editor-Run"]');
    const missing = await waitForText(page, expect[step] || []);
    if (missing.length) result.missing[step] = missing;
    await settle(page);
    await shot(page, step);
  }
  const commands = JSON.parse(env.COMMANDS_JSON || '[]');
  for (const command of commands) await typeAndRun(page, command);
  if (commands.length) {
    await page.waitForSelector('svg g.node', { timeout: 60000 });
    await settle(page);
    await shot(page, 'graph');
  }
  result.nodes = await readGraph(page);
  result.ok = Object.keys(result.missing).length === 0;
} catch (error) {
  result.error = String(error).split('\n')[0];
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.ok ? 0 : 1);
