// page.mjs URL SCREENSHOT - drive the live page in Debian's headless Chromium.
//
// Segments are changed by running $MMKIT_ACT (a command taking
// "create NAME SIZE MODE", "write NAME OFFSET LENGTH", "remove NAME"), so the
// same script runs against the test driver or a real mmkit server.
// Exit 0 pass, 1 fail, 77 skip (no Chromium, no puppeteer-core).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const [url, shot] = process.argv.slice(2);
const fail = (msg) => { console.error('page.mjs: FAIL: ' + msg); process.exitCode = 1; throw new Error(msg); };
const skip = (msg) => { console.error('page.mjs: skip: ' + msg); process.exit(77); };

let puppeteer;
try {
  puppeteer = (await import('puppeteer-core')).default;
} catch (e) {
  skip('puppeteer-core not installed (npm ci in tests/browser)');
}
const candidates = [process.env.CHROMIUM, '/usr/bin/chromium-headless-shell', '/usr/bin/chromium'];
const exe = candidates.find((p) => p && existsSync(p));
if (!exe) skip('no Chromium (apt-get install chromium-headless-shell)');

const act = (...args) => execFileSync(process.env.MMKIT_ACT, args.map(String), { stdio: 'inherit' });

const browser = await puppeteer.launch({
  executablePath: exe,
  headless: exe.endsWith('headless-shell') ? 'shell' : true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-extensions'],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 820, height: 420 });
  const requests = [];
  page.on('request', (r) => requests.push({ url: r.url(), type: r.resourceType(), headers: r.headers() }));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  // 1. A segment made before the page loads is on it.
  act('create', 'before', 65536, '644');
  act('create', 'gone', 4096, '644');
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('tr[data-name="before"] + tr[data-name="gone"]', { timeout: 5000 })
    .catch(() => fail('segment made before load not shown'));
  await page.waitForFunction(() => window.mmkit && window.mmkit.state.source &&
                             window.mmkit.state.source.readyState === 1, { timeout: 5000 })
    .catch(() => fail('event stream not open'));
  const loaded = requests.length;
  await page.evaluate(() => { window.__sameDocument = true; });

  // 2. A segment made after load appears without a reload, within a second.
  // The second counts from the change, not from starting the command.
  act('create', 'after', 1048576, '644');
  let t0 = Date.now();
  await page.waitForSelector('tr[data-name="after"]', { timeout: 1000 })
    .catch(() => fail('segment made after load did not appear within 1 s'));
  const appearMs = Date.now() - t0;
  const before = await page.$eval('g.seg[data-name="after"] rect.bar', (r) => Number(r.getAttribute('width')));
  if (!(before > 0)) fail('no bar for the new segment');

  // 3. A write marks its range on the bar and bumps the version.
  act('write', 'after', 262144, 65536);
  t0 = Date.now();
  await page.waitForFunction(() => {
    const r = document.querySelector('g.seg[data-name="after"] rect.range');
    return r && r.getAttribute('data-offset') === '262144' && r.getAttribute('data-length') === '65536';
  }, { timeout: 1000 }).catch(() => fail('write did not mark the bar within 1 s'));
  const writeMs = Date.now() - t0;
  const geo = await page.$eval('g.seg[data-name="after"]', (g) => {
    const bar = g.querySelector('rect.bar'), rng = g.querySelector('rect.range');
    const n = (e, a) => Number(e.getAttribute(a));
    return { bx: n(bar, 'x'), bw: n(bar, 'width'), rx: n(rng, 'x'), rw: n(rng, 'width'),
             version: g.getAttribute('data-version') };
  });
  // The range covers [1/4, 1/4 + 1/16) of the bar.
  const expectX = geo.bx + geo.bw / 4, expectW = geo.bw / 16;
  if (Math.abs(geo.rx - expectX) > 2 || Math.abs(geo.rw - expectW) > 2)
    fail(`range drawn at x=${geo.rx} w=${geo.rw}, expected x~${expectX} w~${expectW}`);
  const version = await page.$eval('tr[data-name="after"] td.version', (td) => td.textContent);
  if (version === '0' || version !== geo.version) fail(`version cell ${version}, bar says ${geo.version}`);

  // 4. A removed segment goes.
  act('remove', 'gone');
  await page.waitForFunction(() => !document.querySelector('[data-name="gone"]'), { timeout: 1000 })
    .catch(() => fail('removed segment still shown'));

  // 5. Optional (the test driver can cut streams): a lost connection comes
  // back by itself and resumes with Last-Event-ID, missing nothing.
  let reconnected = false;
  if (process.env.MMKIT_KICK === '1') {
    const countBefore = await page.evaluate(() => window.mmkit.state.events);
    act('kick');
    act('create', 'missed', 8192, '644');   // while the page is disconnected
    await page.waitForSelector('tr[data-name="missed"]', { timeout: 5000 })
      .catch(() => fail('the page did not reconnect and resume'));
    const again = requests.filter((r) => new URL(r.url).pathname === '/events');
    if (again.length !== 2) fail('expected one reconnect, saw ' + JSON.stringify(again));
    // The stream reopens with its first URL (?since= of the page load); only
    // Last-Event-ID makes it resume after the last event seen, so exactly
    // one event (the create it missed) arrives, not a replay since load.
    const got = (await page.evaluate(() => window.mmkit.state.events)) - countBefore;
    if (got !== 1) fail(`after reconnecting the page got ${got} events, expected 1 (resume, not replay)`);
    reconnected = true;
  }

  // Give the flash animation its time, then keep a picture for people.
  await new Promise((r) => setTimeout(r, 1300));
  await page.screenshot({ path: shot });

  // 6. Same document all along, and no request after load but the one
  // stream (and its one reconnect, when streams were cut).
  if (!(await page.evaluate(() => window.__sameDocument === true))) fail('the page was reloaded');
  const after = requests.slice(loaded);
  const streams = requests.filter((r) => new URL(r.url).pathname === '/events');
  const expectAfter = reconnected ? 1 : 0;
  if (after.length !== expectAfter || after.some((r) => new URL(r.url).pathname !== '/events'))
    fail('requests after load: ' + JSON.stringify(after.map((r) => r.url)));
  if (streams.length !== 1 + expectAfter || streams.some((r) => r.type !== 'eventsource'))
    fail('expected one EventSource request, saw ' + JSON.stringify(streams.map((r) => r.url)));
  const fetched = requests.map((r) => new URL(r.url).pathname);
  if (fetched.some((p) => !['/', '/segments', '/events'].includes(p)))
    fail('page fetched something else: ' + JSON.stringify(fetched));
  // A cut stream is reported by the browser as an incomplete response.
  const real = errors.filter((e) => !(reconnected && e.includes('ERR_INCOMPLETE_CHUNKED_ENCODING')));
  if (real.length) fail('page errors: ' + real.join('; '));

  console.log(JSON.stringify({ ok: true, browser: exe, appear_ms: appearMs, write_ms: writeMs, reconnected,
                               requests: fetched, screenshot: shot }));
} catch (e) {
  if (!process.exitCode) { console.error('page.mjs: FAIL: ' + e.message); process.exitCode = 1; }
} finally {
  await browser.close();
}
