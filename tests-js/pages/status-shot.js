// Added by tests-js/browser.js (--init-script) to the gateway's status page for
// scripts/status-screenshot: reports `done` (the harness then takes the screenshot) once the
// page has shown 15 snapshots, so its rates, charts and windows have filled.
'use strict';
(() => {
  const timer = setInterval(() => {
    if (Number((document.body && document.body.dataset.updates) || 0) >= 15) {
      clearInterval(timer);
      console.log(JSON.stringify({ kind: 'done' }));
    }
  }, 100);
})();
