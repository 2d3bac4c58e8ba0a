// Instrumentation loaded before a seed's own client code, which then runs unchanged.
//
// - `gateway` (query parameter) becomes the document's base URL, so the seed's relative URLs
//   (`/sse/crash?...`) reach the gateway, from this page's own origin (a cross-origin load).
// - EventSource is wrapped so that every event a seed handler (`onmessage`, or a listener the
//   seed adds) receives is reported, with the handler's name, before the handler runs; opens
//   and errors are reported too (an error with `data` is the gateway's named `error` event,
//   not a lost connection), and so is the gateway's named `reset` event (kind `reset`), which
//   no seed listens for: a test can tell that a resume was a reset although the seed's own
//   handlers never see one.
// - console.log is reported as JSON (objects stringified), then passed through.
// Reports are JSON console lines read by tests-js/browser.js.
'use strict';
(function () {
  const q = new URLSearchParams(location.search);
  const GATEWAY = q.get('gateway');
  const report = (o) => console.info(JSON.stringify(o));
  window.GATEWAY = GATEWAY;
  window.PARAMS = Object.fromEntries(q.entries());
  const base = document.createElement('base');
  base.href = GATEWAY + '/';
  document.head.appendChild(base);

  const log = console.log.bind(console);
  console.log = (...args) => {
    report({
      kind: 'log',
      args: args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))),
    });
    log(...args);
  };

  const Native = window.EventSource;
  const seen = (es, handler, e) =>
    report({
      kind: 'event',
      url: es.url,
      handler,
      type: e.type,
      data: e.data,
      id: e.lastEventId,
    });
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      report({ kind: 'new', url: this.url });
      super.addEventListener('open', () => report({ kind: 'open', url: this.url }));
      super.addEventListener('error', (e) =>
        report({ kind: 'error', url: this.url, readyState: this.readyState, data: e.data }),
      );
      super.addEventListener('reset', (e) =>
        report({ kind: 'reset', url: this.url, data: e.data, id: e.lastEventId }),
      );
    }
    addEventListener(type, fn, opts) {
      super.addEventListener(
        type,
        (e) => {
          if (type !== 'open' && type !== 'error') seen(this, type, e);
          fn.call(this, e);
        },
        opts,
      );
    }
    set onmessage(fn) {
      super.onmessage = (e) => {
        seen(this, 'onmessage', e);
        fn.call(this, e);
      };
    }
    get onmessage() {
      return super.onmessage;
    }
  };
})();
