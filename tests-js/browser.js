// A real browser for the end-to-end tests: Debian's chromium (/usr/bin/chromium), headless,
// driven by playwright-core. No browser build is ever downloaded.
//
// Usage:
//   node browser.js --page <file.html> [--param key=value ...] [--page ... ] [--expect N]
//                   [--expect-kind KIND] [--timeout-ms T] [--port P] [--exit-on-stdin-close]
//   node browser.js --url <http://...> [--init-script <file.js>] [--screenshot <file.png>]
//                   [--viewport WxH] [... the options above but --page, --param, --port]
//
// With --url it opens that address as it is (a page the gateway serves itself, such as
// /status) instead of serving a page; --init-script adds a script to the page before any of
// its own runs (through the DevTools protocol, so the page's Content-Security-Policy does not
// apply to it): it reports as a page would. --screenshot saves the page (whole, at --viewport,
// default 1280x800) when it reports {"kind":"done"}, before closing.
//
// It serves the page's folder over HTTP on 127.0.0.1 (port P, default 0: a free one), so the
// page has an origin of its own, different from the gateway's (a cross-origin load, as on a
// real casino front end). It opens http://127.0.0.1:<port>/<page>?<params> in a fresh browser
// profile; the page reads its parameters from `location.search`.
//
// --page may be given several times (all from one folder): one browser then opens every page,
// each in its own context (its own cookies and its own pool of connections, as separate
// visitors' browsers would have: Chromium's six connections per host are per context). A
// --param belongs to the --page before it; one given before any --page goes to every page.
// Starting Chromium once for several pages is what keeps such a test cheap.
//
// The page reports by `console.log(JSON.stringify({kind: ..., ...}))`. Every such object is
// printed as one JSON line on stdout, unchanged but for `page`, the index of the --page that
// reported it (0 with --url), added to every line about a page. Lines the harness adds have
// kinds starting with `harness.`:
//   harness.ready        {origin, url, browserPid, version}   the page is being loaded (one
//                                            line per page)
//   harness.console      {type, text}       a console message that is not a JSON object
//                                            (the browser's own errors, e.g. CORS refusals)
//   harness.pageerror    {message}          an uncaught exception in the page
//   harness.requestfailed {url, failure}    a request the browser saw fail
//   harness.timeout      {got}              the timeout passed first
//   harness.fatal        {message}          the browser could not be started or driven
//   harness.exit         {reason, code}     last line
//
// It exits by itself, always closing the browser first:
//   0  after N lines of kind KIND (default `message`; --expect 0 or absent: no such limit),
//      when the page reports {"kind":"done"}, on SIGTERM/SIGINT, or (with
//      --exit-on-stdin-close) when its standard input closes;
//   3  when --timeout-ms (default 30000) passes first;
//   1  when the browser fails; 2 on a usage error.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function usage(msg) {
  process.stderr.write(
    `browser.js: ${msg}\nusage: node browser.js --page <file.html> [--param key=value ...] ` +
      '[--page ...] [--expect N] [--expect-kind KIND] [--timeout-ms T] [--port P] ' +
      '[--exit-on-stdin-close]\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    // Each --page: its file and its own parameters.
    pages: [],
    // Parameters given before any --page: every page gets them.
    params: [],
    expect: 0,
    expectKind: 'message',
    timeoutMs: 30000,
    port: 0,
    exitOnStdinClose: false,
    url: null,
    initScript: null,
    screenshot: null,
    viewport: { width: 1280, height: 800 },
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    const int = (v) => {
      if (!/^\d+$/.test(v)) usage(`${a}: not a whole number: ${v}`);
      return parseInt(v, 10);
    };
    switch (a) {
      case '--page':
        o.pages.push({ file: val(), params: [] });
        break;
      case '--param': {
        const kv = val();
        const eq = kv.indexOf('=');
        if (eq <= 0) usage(`--param wants key=value, got ${kv}`);
        const to = o.pages.length > 0 ? o.pages[o.pages.length - 1].params : o.params;
        to.push([kv.slice(0, eq), kv.slice(eq + 1)]);
        break;
      }
      case '--expect':
        o.expect = int(val());
        break;
      case '--expect-kind':
        o.expectKind = val();
        break;
      case '--timeout-ms':
        o.timeoutMs = int(val());
        break;
      case '--port':
        o.port = int(val());
        break;
      case '--exit-on-stdin-close':
        o.exitOnStdinClose = true;
        break;
      case '--url':
        o.url = val();
        break;
      case '--init-script':
        o.initScript = val();
        break;
      case '--screenshot':
        o.screenshot = val();
        break;
      case '--viewport': {
        const m = /^(\d+)x(\d+)$/.exec(val());
        if (!m) usage('--viewport wants WIDTHxHEIGHT');
        o.viewport = { width: parseInt(m[1], 10), height: parseInt(m[2], 10) };
        break;
      }
      default:
        usage(`unknown argument ${a}`);
    }
  }
  if ((o.pages.length > 0) === Boolean(o.url)) usage('one of --page and --url is required');
  for (const p of o.pages) p.params = o.params.concat(p.params);
  if (o.timeoutMs <= 0) usage('--timeout-ms must be positive');
  return o;
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
};

// Serves the files of `root` (nothing above it), uncached.
function serveStatic(root, port) {
  const server = http.createServer((req, res) => {
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (rel === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const file = path.resolve(root, '.' + rel);
    if (file !== root && !file.startsWith(root + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    fs.readFile(file, (err, body) => {
      if (err) {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
        return;
      }
      res.writeHead(200, {
        'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
        'Cache-Control': 'no-store',
      });
      res.end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const pageFiles = opts.pages.map((p) => path.resolve(p.file));
  for (const f of pageFiles) {
    if (!fs.existsSync(f)) usage(`no such page: ${f}`);
    if (path.dirname(f) !== path.dirname(pageFiles[0])) usage('pages must share one folder');
  }
  if (opts.initScript && !fs.existsSync(opts.initScript)) {
    usage(`no such script: ${opts.initScript}`);
  }
  if (!fs.existsSync(CHROMIUM)) {
    out({ kind: 'harness.fatal', message: `${CHROMIUM} is missing: run scripts/install-deps` });
    process.exit(1);
  }
  const { chromium } = require('playwright-core');

  let got = 0;
  let browserServer = null;
  let browser = null;
  let httpServer = null;
  let finishing = false;

  // Closes everything and exits; bounded: a browser that does not close in 5 s is killed.
  const finish = async (reason, code) => {
    if (finishing) return;
    finishing = true;
    const hard = setTimeout(() => {
      if (browserServer) browserServer.kill().catch(() => {});
      out({ kind: 'harness.exit', reason, code, forced: true });
      process.exit(code);
    }, 5000);
    try {
      if (browser) await browser.close();
    } catch {}
    try {
      if (browserServer) await browserServer.close();
    } catch {}
    if (httpServer) {
      httpServer.closeAllConnections();
      httpServer.close();
    }
    clearTimeout(hard);
    out({ kind: 'harness.exit', reason, code });
    process.exit(code);
  };

  setTimeout(() => {
    out({ kind: 'harness.timeout', got });
    finish('timeout', 3);
  }, opts.timeoutMs);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => finish(sig, 0));
  if (opts.exitOnStdinClose) {
    process.stdin.on('end', () => finish('stdin closed', 0));
    process.stdin.on('error', () => finish('stdin closed', 0));
    process.stdin.resume();
  }

  // The first page: the one --screenshot takes.
  let firstPage = null;
  const report = (o) => {
    if (finishing) return;
    out(o);
    if (o.kind === 'done' && opts.screenshot && firstPage) {
      const file = opts.screenshot;
      firstPage
        .screenshot({ path: file, fullPage: true })
        .then(() => out({ kind: 'harness.screenshot', file }))
        .catch((e) => out({ kind: 'harness.fatal', message: `screenshot: ${e}` }))
        .finally(() => finish('done', 0));
    } else if (o.kind === 'done') {
      finish('done', 0);
    } else if (opts.expect > 0 && o.kind === opts.expectKind) {
      got += 1;
      if (got >= opts.expect) finish(`got ${got} ${opts.expectKind}`, 0);
    }
  };

  try {
    // What to open: [origin, url] per page.
    let targets;
    if (pageFiles.length > 0) {
      httpServer = await serveStatic(path.dirname(pageFiles[0]), opts.port);
      const origin = `http://127.0.0.1:${httpServer.address().port}`;
      targets = pageFiles.map((f, i) => [
        origin,
        `${origin}/${encodeURIComponent(path.basename(f))}?${new URLSearchParams(opts.pages[i].params)}`,
      ]);
    } else {
      targets = [[new URL(opts.url).origin, opts.url]];
    }

    // launchServer, not launch: it tells the browser's PID, so the caller can make sure it
    // is gone. The harness closes it on every way out; playwright's own exit hook kills it
    // if this process dies first. A fresh temporary profile is made (and removed) by it.
    browserServer = await chromium.launchServer({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: Math.min(30000, opts.timeoutMs),
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
    if (finishing) return;
    browser = await chromium.connect(browserServer.wsEndpoint());
    if (finishing) return;
    // Every page is set up first, then all are loaded at once.
    const loads = [];
    for (const [i, [origin, url]] of targets.entries()) {
      // newPage: a page in a context of its own.
      const page = await browser.newPage({ viewport: opts.viewport });
      if (finishing) return;
      if (i === 0) firstPage = page;
      if (opts.initScript) await page.addInitScript({ path: path.resolve(opts.initScript) });
      page.on('console', (msg) => {
        const text = msg.text();
        let v = null;
        try {
          v = JSON.parse(text);
        } catch {}
        if (v && typeof v === 'object' && !Array.isArray(v) && typeof v.kind === 'string') {
          report({ ...v, page: i });
        } else {
          report({ kind: 'harness.console', page: i, type: msg.type(), text });
        }
      });
      page.on('pageerror', (e) =>
        report({ kind: 'harness.pageerror', page: i, message: String(e) }),
      );
      page.on('requestfailed', (r) =>
        report({
          kind: 'harness.requestfailed',
          page: i,
          url: r.url(),
          failure: r.failure() && r.failure().errorText,
        }),
      );
      out({
        kind: 'harness.ready',
        page: i,
        origin,
        url,
        browserPid: browserServer.process().pid,
        version: browser.version(),
      });
      // Not 'load': a page whose stream is open may never be reported loaded.
      loads.push(() =>
        page.goto(url, { waitUntil: 'commit', timeout: Math.min(30000, opts.timeoutMs) }),
      );
    }
    await Promise.all(loads.map((load) => load()));
  } catch (e) {
    if (!finishing) {
      out({ kind: 'harness.fatal', message: String((e && e.stack) || e) });
      finish('fatal', 1);
    }
  }
}

main();
