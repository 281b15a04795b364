// axe-core on the landing page and the chat page, wide and phone-sized: no serious or
// critical violation, and no sideways scrolling on a phone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import { startServer } from './lib/server.mjs';
import { launch, openHydrated, resultsDir } from './lib/browser.mjs';

const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  const exit = await server?.stop();
  assert.equal(exit?.code, 0, `server exit ${JSON.stringify(exit)}`);
});

/** Serious and critical violations on the page as it is now. */
async function violations(page) {
  await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

for (const [width, height] of [[1280, 800], [360, 740]]) {
  for (const scheme of ['light', 'dark']) {
    test(`landing and chat at ${width} px, ${scheme}: no serious axe violation, no sideways scroll`, async () => {
      const page = await browser.context.newPage();
      await page.setViewportSize({ width, height });
      await page.emulateMedia({ colorScheme: scheme });
      await openHydrated(page, server.url);
      await page.waitForFunction(() => document.querySelector('[data-testid="online"]')?.dataset.count !== undefined);
      assert.deepEqual(await violations(page), [], 'landing');
      assert.equal(await page.locator('h1').count(), 1, 'the landing page has one level-one heading');
      await page.screenshot({ path: path.join(resultsDir, `a11y-landing-${width}-${scheme}.png`), fullPage: true });

      // The chat page, waiting for a stranger in text mode (no camera needed).
      await page.click('label[for="mode-text"]');
      await page.check('#terms');
      await page.click('[data-testid="start"]');
      await page.waitForSelector('[data-testid="chat"][data-phase="waiting"]');
      assert.deepEqual(await violations(page), [], 'chat');
      assert.equal(await page.locator('h1').count(), 1, 'the chat page has one level-one heading');
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the chat page is ${overflow} px wider than the screen`);
      await page.screenshot({ path: path.join(resultsDir, `a11y-chat-${width}-${scheme}.png`), fullPage: true });
      await page.click('[data-testid="stop"]');
      await page.close();
    });
  }
}
