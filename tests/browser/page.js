// page.js - drive mmkitd's live page in headless Chromium (puppeteer-core).
// usage: node page.js URL MMKIT SOCKET SCREENSHOT CHROMIUM PIDFILE STATEDIR PORT
// Checks: a segment created before load is shown; one created after load
// appears within a second without a reload; a write changes its bar; the
// page made no request after load other than its one event stream; when
// the server restarts, the stream reconnects by itself and goes on (the
// server in PIDFILE runs with --daemon and STATEDIR).  That the browser
// sends Last-Event-ID is its own business; the server's resume is tested
// with curl (server_http.sh).
'use strict';
const { execFileSync } = require('child_process');
const puppeteer = require('puppeteer-core');

const fs = require('fs');
const [url, mmkit, sock, shot, chromium, pidfile, statedir, port] = process.argv.slice(2);
const sleep = ms => new Promise(r => setTimeout(r, ms));

async function restartServer() {
  const pid = Number(fs.readFileSync(pidfile, 'utf8'));
  // Never 0 or -1: kill() would signal the whole process group.
  if (!Number.isInteger(pid) || pid <= 1) fail('no server pid in ' + pidfile);
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 300; i++) {
    try { process.kill(pid, 0); } catch (e) { break; }
    await sleep(20);
  }
  // The daemon keeps stderr: do not make it a pipe we would wait on.
  const out = execFileSync(mmkit, ['server', '--daemon', '--quiet', '--socket', sock, '--state-dir', statedir,
                                    '--http', '127.0.0.1:' + port], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fresh = String(out).trim();
  if (!/^[0-9]+$/.test(fresh) || Number(fresh) <= 1) fail('the restarted server printed no pid: ' + fresh);
  fs.writeFileSync(pidfile, fresh);
}
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

    // The server goes away and comes back: EventSource reconnects on its own.
    await restartServer();
    execFileSync(mmkit, ['seg', 'create', 'resumed', '4K', '--mode', '0644', '--socket', sock]);
    await page.waitForSelector('#row-resumed', { timeout: 8000 }).catch(() => fail('no reconnect after a server restart'));
    const streams = requests.filter(r => new URL(r.url).pathname === '/events');
    if (streams.length !== 2) fail('expected 2 /events requests (one reconnect), saw ' + streams.length);

    const after = requests.filter(r => r.t >= loadedAt).map(r => new URL(r.url).pathname + new URL(r.url).search);
    const all = requests.map(r => new URL(r.url).pathname);
    const count = p => all.filter(x => x === p).length;
    if (count('/segments') !== 1) fail('/segments fetched ' + count('/segments') + ' times: ' + all.join(' '));
    if (count('/events') !== 2) fail('/events opened ' + count('/events') + ' times: ' + all.join(' '));
    const other = after.filter(p => p !== '/events' && p !== '/segments');
    if (other.length) fail('requests after load: ' + other.join(' '));
    if (all.some(p => !['/', '/segments', '/events'].includes(p))) fail('unexpected requests: ' + all.join(' '));
    console.log('page.js: ok (new segment shown after ' + appeared + ' ms; requests: ' + all.join(' ') + ')');
  } finally {
    await browser.close();
  }
})().catch(e => fail(String(e && e.stack || e)));
