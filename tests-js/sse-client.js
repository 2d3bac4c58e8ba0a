// A real, third-party SSE client (the `eventsource` npm package) for the end-to-end tests.
// Usage: node sse-client.js URL MAX_EVENTS TIMEOUT_MS [Authorization-header]
// Prints one JSON line per event received ({"kind":"message","data":...,"id":...}) and one
// per connection opened ({"kind":"open"}), then exits 0 after MAX_EVENTS messages or 3 when
// the timeout passes first. The library reconnects by itself, sending Last-Event-ID.
const EventSource = require('eventsource');
const [url, maxArg, timeoutArg, auth] = process.argv.slice(2);
const max = parseInt(maxArg, 10);
const headers = auth ? { Authorization: auth } : {};
const es = new EventSource(url, { headers });
let got = 0;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
es.onopen = () => out({ kind: 'open' });
es.onerror = (e) => out({ kind: 'error', status: e && e.status });
es.onmessage = (e) => {
  out({ kind: 'message', data: e.data, id: e.lastEventId });
  got += 1;
  if (got >= max) {
    es.close();
    process.exit(0);
  }
};
setTimeout(() => {
  out({ kind: 'timeout', got });
  process.exit(3);
}, parseInt(timeoutArg, 10));
