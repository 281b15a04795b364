// The landing page: served, styled, hydrated, and its online counter is live.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer } from './lib/server.mjs';
import { launch, openHydrated, resultsDir } from './lib/browser.mjs';

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

const onlineCount = (page) =>
  page.$eval('[data-testid="online"]', (el) => el.dataset.count === undefined ? null : Number(el.dataset.count));

test('the page hydrates, is styled, and shows the server\'s online count', async () => {
  const page = await browser.newPage();
  await openHydrated(page, server.url);
  // Styled: the Tailwind stylesheet loaded and the brand background applies.
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(bg, 'rgba(0, 0, 0, 0)', 'body has the paper background from the stylesheet');
  await page.waitForFunction(() => document.querySelector('[data-testid="online"]')?.dataset.count !== undefined);
  const first = await onlineCount(page);
  const health = await server.health();
  assert.equal(first, health.sessions, 'the counter shows the server\'s session count');
  assert.match(await page.textContent('[data-testid="online"]'), new RegExp(`^\\s*${first} online`));

  // A second tab raises the first tab's counter within two seconds.
  const second = await browser.context.newPage();
  await openHydrated(second, server.url);
  const started = Date.now();
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="online"]').dataset.count) === n, first + 1, { timeout: 2_500 });
  console.log(`# second tab counted after ${Date.now() - started} ms`);
  await page.screenshot({ path: path.join(resultsDir, 'landing.png'), fullPage: true });

  // Closing it lowers the count again once its session's grace period ends is
  // covered by server tests; here: the interactive controls work after hydration.
  await page.click('label[for="mode-text"]');
  assert.equal(await page.isChecked('#mode-text'), true);
  await page.fill('#interests', 'Music');
  await page.keyboard.press('Enter');
  await page.type('#interests', 'chess,');
  const chips = await page.$$eval('[aria-label="Your interests"] li span', (els) => els.map((e) => e.textContent));
  assert.deepEqual(chips, ['music', 'chess']);
  await page.click('button[aria-label="Remove music"]');
  assert.deepEqual(await page.$$eval('[aria-label="Your interests"] li span', (els) => els.map((e) => e.textContent)), ['chess']);
  await page.fill('#interests', 'x'.repeat(40));
  await page.keyboard.press('Enter');
  assert.match(await page.textContent('#interests-help'), /under 33 characters/);
  await second.close();
  assert.deepEqual(browser.problems, []);
});

test('a narrow phone screen renders without horizontal scrolling', async () => {
  const page = await browser.newPage();
  await page.setViewportSize({ width: 375, height: 740 });
  await openHydrated(page, server.url);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
  await page.screenshot({ path: path.join(resultsDir, 'landing-mobile.png'), fullPage: true });
  assert.deepEqual(browser.problems, []);
});

test('unknown paths get a 404 page', async () => {
  const res = await fetch(`${server.url}/no-such-page`);
  assert.equal(res.status, 404);
  assert.match(await res.text(), /Nobody here/);
});
