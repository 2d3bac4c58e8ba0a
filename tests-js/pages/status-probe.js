// Added by tests-js/browser.js (--init-script) to the gateway's own status page (/status):
// every 100 ms it reports what the page shows, as one JSON line, for the gateway's e2e test
// (gateway/tests/e2e/status_page.rs). It only reads the DOM.
'use strict';
(() => {
  const text = (id) => {
    const el = document.getElementById(id);
    return el ? el.textContent : null;
  };
  const report = () => {
    const hist = document.getElementById('latency-histogram');
    const chart = document.getElementById('events-chart');
    console.log(JSON.stringify({
      kind: 'status',
      updates: Number((document.body && document.body.dataset.updates) || 0),
      state: text('conn-state'),
      streams: text('streams-total'),
      eventsIn: text('events-in'),
      eventsOut: text('events-out'),
      p50: text('lat-p50'),
      p99: text('lat-p99'),
      latencyBars: hist ? [...hist.querySelectorAll('rect.bar')].filter((r) => Number(r.getAttribute('height')) > 0).length : 0,
      chartPaths: chart ? chart.querySelectorAll('path').length : 0,
      coreBars: document.querySelectorAll('#streams-per-core rect').length,
      families: document.querySelectorAll('#families tbody tr').length,
      refusals: document.querySelectorAll('#refusals tbody tr').length,
      // Everything the page loaded besides itself (it must be the gateway only).
      resources: performance.getEntriesByType('resource').map((e) => e.name),
      origin: location.origin,
    }));
  };
  setInterval(report, 100);
})();
