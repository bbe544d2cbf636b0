// Shared by the browser tests: launch Debian's headless chromium and connect Neo4j Browser.
//   BROWSER_URL      http://127.0.0.1:PORT/browser/
//   BOLT_ADDRESS     127.0.0.1:PORT
//   NEO4J_USER / NEO4J_PASSWORD   (empty password means "No authentication")
import { chromium } from 'playwright-core';

export async function launch(env) {
  return chromium.launch({
    executablePath: env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}

export async function connect(page, env) {
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
}

export function editor(page) {
  return page.locator('#monaco-main-editor, [data-testid="activeEditor"], .monaco-editor').first();
}

export async function typeAndRun(page, command) {
  await editor(page).click();
  await page.keyboard.type(command, { delay: 0 });
  await page.click('[data-testid="editor-Run"]');
  await page.waitForTimeout(1000);
}
