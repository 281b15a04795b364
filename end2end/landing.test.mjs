// The landing page: served, styled, hydrated, and its online counter is live.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer, root } from './lib/server.mjs';
import { launch, openHydrated, resultsDir } from './lib/browser.mjs';

let server;
let browser;

before(async () => {
  // With the real IP database: loopback has no country in it, so the page offers the
  // list unless a test says otherwise.
  const db = path.join(root, 'node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb');
  server = await startServer({ args: ['--geoip-db', db] });
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

test('same country: the list when the connection\'s country is unknown, the country itself when it is known', async () => {
  const page = await browser.newPage();
  await openHydrated(page, server.url);
  await page.waitForFunction(() => document.querySelector('[data-testid="online"]')?.dataset.count !== undefined);
  assert.equal((await page.textContent('[data-testid="same-country-label"]')).trim(), 'Only strangers from my country');
  await page.check('#same-country');
  assert.equal(await page.isVisible('#country'), true, 'loopback is not in the database: the user picks');
  await page.close();

  // A connection the database places in Germany (loopback stands in for it: the
  // server's welcome is given the country it would carry).
  const sent = [];
  const abroad = await browser.context.newPage();
  await abroad.routeWebSocket(/\/ws/, (ws) => {
    const upstream = ws.connectToServer();
    upstream.onMessage((text) => {
      const msg = JSON.parse(text);
      if (msg.type === 'welcome') msg.country = 'DE';
      ws.send(JSON.stringify(msg));
    });
    ws.onMessage((text) => { sent.push(JSON.parse(text)); upstream.send(text); });
  });
  await openHydrated(abroad, server.url);
  await abroad.waitForFunction(() => /from your connection/.test(document.querySelector('[data-testid="same-country-label"]').textContent));
  assert.equal(
    (await abroad.textContent('[data-testid="same-country-label"]')).trim(),
    'Only strangers from my country (Germany, from your connection)',
  );
  await abroad.check('#same-country');
  assert.equal(await abroad.isVisible('#country'), false, 'no list when the country is known');
  await abroad.screenshot({ path: path.join(resultsDir, 'landing-country.png'), fullPage: true });
  await abroad.click('label[for="mode-text"]');
  await abroad.check('#terms');
  await abroad.click('[data-testid="start"]');
  await abroad.waitForURL(/\/chat$/);
  const deadline = Date.now() + 5_000;
  while (!sent.some((m) => m.type === 'join') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const join = sent.find((m) => m.type === 'join');
  assert.deepEqual([join?.country, join?.same_country], ['DE', true], JSON.stringify(join));
  await abroad.close();
  assert.deepEqual(browser.problems, []);
});

test('unknown paths get a 404 page', async () => {
  const res = await fetch(`${server.url}/no-such-page`);
  assert.equal(res.status, 404);
  assert.match(await res.text(), /Nobody here/);
});
