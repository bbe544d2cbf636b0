// Opens a ring report (a local HTML file) in Debian's headless chromium with every request
// that is not a file:// URL aborted, waits for the charts, and reports what was drawn.
// Inputs come from the environment:
//   REPORT       path of report.html
//   SCREENSHOT   path of the PNG to write (full page)
//   CLIP_SCREENSHOT  optional: path of a PNG of the page's first screen
//   CHARTS_SCREENSHOT  optional: path of a PNG of the first cluster's charts
//   CHART_DIR    optional: a folder for one PNG per chart
// Prints one JSON line: {"ok": bool, "charts": [{id, svg, traces, drawn}], "errors": [...],
// "blocked": [...], "meta": {...}, "rows": {cluster: [account ids]}, "sorted": bool}.
import { chromium } from 'playwright-core';

const env = process.env;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
});
const result = { ok: false, charts: [], errors: [], blocked: [], meta: null, rows: {} };
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file://')) return route.continue();
    result.blocked.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') result.errors.push(msg.text()); });
  page.on('pageerror', (err) => result.errors.push(String(err)));
  await page.goto('file://' + env.REPORT, { waitUntil: 'load', timeout: 120000 });
  result.meta = JSON.parse(await page.locator('#report-meta').textContent());
  // A chart is drawn when plotly put its SVG in the div and at least one trace or heatmap in it.
  const expected = result.meta.charts.length;
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    result.charts = await page.evaluate(() => Array.from(
      document.querySelectorAll('div.js-plotly-plot')).map((div) => ({
        id: div.id,
        svg: div.querySelectorAll('svg.main-svg').length,
        traces: div.querySelectorAll('g.trace, g.hm, image, g.cartesianlayer path.point').length,
        drawn: (div.data || []).length,
      })));
    if (result.charts.length >= expected && result.charts.every((c) => c.svg > 0)) break;
    await page.waitForTimeout(250);
  }
  result.rows = await page.evaluate(() => Object.fromEntries(
    Array.from(document.querySelectorAll('section.cluster')).map((section) => [
      section.dataset.cluster,
      Array.from(section.querySelectorAll('table.members tbody tr')).map((r) => r.cells[0].textContent),
    ])));
  if (env.CLIP_SCREENSHOT) {
    await page.screenshot({ path: env.CLIP_SCREENSHOT, fullPage: false });
  }
  if (env.CHARTS_SCREENSHOT) {
    await page.locator('section.cluster .charts').first().screenshot({ path: env.CHARTS_SCREENSHOT });
  }
  if (env.CHART_DIR) {
    for (const chart of result.charts) {
      await page.locator(`[id="${chart.id}"]`).screenshot({ path: `${env.CHART_DIR}/${chart.id}.png` });
    }
  }
  // Sorting: a click on the score header orders the first table by score.
  const header = page.locator('table.members th', { hasText: 'score' }).first();
  await header.click();
  result.sorted = await page.evaluate(() => {
    const rows = Array.from(document.querySelector('table.members').tBodies[0].rows);
    const scores = rows.map((r) => parseFloat(r.cells[2].textContent));
    return scores.every((s, i) => i === 0 || scores[i - 1] <= s);
  });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(500);
  await page.screenshot({ path: env.SCREENSHOT, fullPage: true });
  result.ok = true;
} catch (err) {
  result.error = String(err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
