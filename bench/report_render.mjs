// Seconds headless chromium takes from opening PAGE (a local file, network blocked) until
// COUNT elements match SELECTOR (the drawn charts). Prints {"seconds": s}.
// Resolves playwright-core from tests/browser/node_modules (`make browser-deps`).
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const env = process.env;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  await context.route('**/*', (route) =>
    route.request().url().startsWith('file://') ? route.continue() : route.abort());
  const page = await context.newPage();
  const started = Date.now();
  await page.goto('file://' + env.PAGE, { waitUntil: 'load', timeout: 120000 });
  const count = Number(env.COUNT || 1);
  await page.waitForFunction(
    ([selector, n]) => document.querySelectorAll(selector).length >= n,
    [env.SELECTOR, count], { timeout: 120000 });
  console.log(JSON.stringify({ seconds: (Date.now() - started) / 1000 }));
} finally {
  await browser.close();
}
