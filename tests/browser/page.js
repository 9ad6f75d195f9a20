// page.js - drive mmkitd's live page in headless Chromium (puppeteer-core).
// usage: node page.js URL MMKIT SOCKET SCREENSHOT CHROMIUM
// Checks: a segment created before load is shown; one created after load
// appears within a second without a reload; a write changes its bar; the
// page made no request after load other than its one event stream.
'use strict';
const { execFileSync } = require('child_process');
const puppeteer = require('puppeteer-core');

const [url, mmkit, sock, shot, chromium] = process.argv.slice(2);
const seg = (...args) => execFileSync(mmkit, ['seg', ...args, '--socket', sock], { input: args.input || '' });
function fail(msg) { console.error('page.js: FAIL: ' + msg); process.exit(1); }

(async () => {
  const browser = await puppeteer.launch({
    executablePath: chromium, headless: 'shell',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 820, height: 360 });
    const requests = [];
    page.on('request', r => requests.push({ url: r.url(), t: Date.now() }));
    let loadedAt = 0;
    page.on('load', () => { loadedAt = Date.now(); });
    await page.goto(url + '/', { waitUntil: 'load' });
    await page.waitForSelector('#row-before', { timeout: 5000 }).catch(() => fail('segment created before load not shown'));
    await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('live'), { timeout: 5000 })
      .catch(() => fail('the event stream never opened'));

    const t0 = Date.now();
    execFileSync(mmkit, ['seg', 'create', 'after', '64K', '--mode', '0644', '--socket', sock]);
    await page.waitForSelector('#row-after', { timeout: 1000 }).catch(() => fail('segment created after load did not appear within 1 s'));
    const appeared = Date.now() - t0;

    const before = await page.$eval('#bar-after', b => b.dataset.version);
    execFileSync(mmkit, ['seg', 'write', 'after', '--offset', '16384', '--socket', sock], { input: 'written by the test' });
    await page.waitForFunction(v => { const b = document.getElementById('bar-after'); return b && b.dataset.version !== v; },
      { timeout: 2000 }, before).catch(() => fail('a write did not change the bar'));
    await page.waitForSelector('rect.range', { timeout: 1000 }).catch(() => fail('the written range is not marked'));
    await page.screenshot({ path: shot });

    const after = requests.filter(r => r.t >= loadedAt).map(r => new URL(r.url).pathname + new URL(r.url).search);
    const all = requests.map(r => new URL(r.url).pathname);
    const count = p => all.filter(x => x === p).length;
    if (count('/segments') !== 1) fail('/segments fetched ' + count('/segments') + ' times: ' + all.join(' '));
    if (count('/events') !== 1) fail('/events opened ' + count('/events') + ' times: ' + all.join(' '));
    const other = after.filter(p => p !== '/events' && p !== '/segments');
    if (other.length) fail('requests after load: ' + other.join(' '));
    if (all.some(p => !['/', '/segments', '/events'].includes(p))) fail('unexpected requests: ' + all.join(' '));
    console.log('page.js: ok (new segment shown after ' + appeared + ' ms; requests: ' + all.join(' ') + ')');
  } finally {
    await browser.close();
  }
})().catch(e => fail(String(e && e.stack || e)));
