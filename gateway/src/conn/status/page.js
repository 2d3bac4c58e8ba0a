'use strict';
// The status page's script (inlined by gateway/src/conn/status.rs, allowed by its hash).
// It reads `status` events from status/stream: cumulative counters, the same JSON as
// /api/v1/events/stats, plus `at_ms` (when the snapshot was taken, ms since the node
// started), `period_ms` and `latency_histogram` ([upper bound in us, count] of every
// non-empty bucket, cumulative). Rates and windows are differences between snapshots, over
// their own timestamps. Nothing here loads anything else; every value from the gateway is
// written with textContent or as an SVG attribute, never parsed as markup.
(() => {
  const LATENCY_WINDOW_MS = 10000;
  const COUNT_WINDOW_MS = 60000;
  const KEEP_MS = COUNT_WINDOW_MS + 5000;
  const RETRY_REFUSED_MS = 5000;
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  let snaps = [];
  let updates = 0;
  let lastArrival = 0;
  let source = null;

  const get = (o, path) => path.split('.').reduce((v, k) => (v == null ? undefined : v[k]), o);
  const num = (v) => (typeof v === 'number' && isFinite(v) ? v : 0);
  const fmtInt = (n) => Math.round(n).toLocaleString('en-US');
  const fmtRate = (n) => (n >= 100 ? fmtInt(n) : n >= 10 ? n.toFixed(1) : n.toFixed(2).replace(/\.?0+$/, ''));
  const fmtUs = (us) => {
    if (us < 1000) return `${(us / 1000).toFixed(3)} ms`;
    if (us < 100000) return `${(us / 1000).toFixed(1)} ms`;
    if (us < 10000000) return `${fmtInt(us / 1000)} ms`;
    return `${(us / 1e6).toFixed(1)} s`;
  };
  const fmtSecs = (s) => {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s % 60}s`;
    return `${s}s`;
  };
  const set = (id, text) => {
    const el = $(id);
    if (el && el.textContent !== String(text)) el.textContent = String(text);
  };
  const svgEl = (name, attrs, text) => {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (text != null) el.textContent = String(text);
    return el;
  };
  const clear = (el) => { while (el.firstChild) el.removeChild(el.firstChild); };

  // The snapshot to difference the newest against for a window of `ms`: the oldest one no
  // more than `ms` older than the newest (or simply the oldest kept).
  const base = (ms) => {
    const newest = snaps[snaps.length - 1];
    return snaps.find((x) => newest.at_ms - x.at_ms <= ms) || snaps[0];
  };
  const windowLabel = (b) => {
    const newest = snaps[snaps.length - 1];
    const secs = Math.round((newest.at_ms - b.at_ms) / 1000);
    return secs >= 59 ? 'last minute' : `last ${secs} s (since this page opened)`;
  };

  function state(text, cls) {
    const el = $('conn-state');
    el.textContent = text;
    el.className = `badge ${cls}`;
  }

  function connect() {
    state('connecting', 'wait');
    source = new EventSource('status/stream');
    source.addEventListener('status', (e) => {
      let s;
      try {
        s = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      lastArrival = Date.now();
      state('live', 'good');
      take(s);
    });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (503: SSE_STATUS_VIEWERS open already) or not an event stream at all.
        state(`refused or unavailable: retrying in ${RETRY_REFUSED_MS / 1000} s`, 'bad');
        source.close();
        setTimeout(connect, RETRY_REFUSED_MS);
      } else {
        state('reconnecting', 'wait');
      }
    });
  }

  function take(s) {
    const newest = snaps[snaps.length - 1];
    // A restarted gateway counts from zero: differences with the old run mean nothing.
    if (newest && num(s.at_ms) < newest.at_ms) snaps = [];
    s.at_ms = num(s.at_ms);
    snaps.push(s);
    while (snaps.length > 2 && s.at_ms - snaps[0].at_ms > KEEP_MS) snaps.shift();
    render();
    updates += 1;
    document.body.dataset.updates = String(updates);
  }

  function render() {
    const s = snaps[snaps.length - 1];
    const prev = snaps.length > 1 ? snaps[snaps.length - 2] : null;
    set('driver', s.driver || '–');
    set('broker', s.broker || '–');
    set('uptime', fmtSecs(num(s.uptime_seconds)));
    set('viewers', fmtInt(num(s.status_viewers)));
    set('period', `${num(s.period_ms)} ms`);
    $('draining').hidden = !s.draining;
    renderStreams(s);
    renderEvents(s, prev);
    renderLatency(s);
    renderCounts('cuts', CUTS);
    renderCounts('refusals', REFUSALS);
    renderRedis(s);
    const label = windowLabel(base(COUNT_WINDOW_MS));
    for (const el of document.querySelectorAll('.window-label')) el.textContent = label;
  }

  function renderStreams(s) {
    const c = s.connections || {};
    set('streams-total', fmtInt(num(c.total)));
    set('streams-limit', fmtInt(num(c.limit)));
    set('pending', fmtInt(num(c.pending)));
    set('pending-limit', fmtInt(num(c.pending_limit)));
    set('open-files', c.open_files == null ? 'n/a' : fmtInt(c.open_files));
    set('open-files-limit', c.open_files_limit == null ? 'n/a' : fmtInt(c.open_files_limit));
    const body = $('families').tBodies[0];
    const lat = s.delivery_latency_ms || {};
    const names = Object.keys(c.per_route || {});
    if (body.rows.length !== names.length) {
      clear(body);
      for (const name of names) {
        const tr = body.insertRow();
        for (let i = 0; i < 4; i++) tr.insertCell();
        tr.cells[0].textContent = name;
      }
    }
    names.forEach((name, i) => {
      const row = body.rows[i];
      row.cells[0].textContent = name;
      row.cells[1].textContent = fmtInt(num(c.per_route[name]));
      const l = lat[name] || {};
      row.cells[2].textContent = num(l.count) ? num(l.p50).toFixed(3) : '–';
      row.cells[3].textContent = num(l.count) ? num(l.p99).toFixed(3) : '–';
    });
    bars($('streams-per-core'), (c.per_core || []).map((n, i) => [`core ${i}`, num(n)]));
  }

  // Horizontal bars, one a row: [label, value].
  function bars(svg, rows) {
    const rowH = 18, labelW = 56, width = 360;
    clear(svg);
    svg.setAttribute('viewBox', `0 0 ${width} ${rows.length * rowH + 2}`);
    svg.setAttribute('height', String(rows.length * rowH + 2));
    const max = Math.max(1, ...rows.map((r) => r[1]));
    rows.forEach(([label, v], i) => {
      const y = i * rowH;
      svg.appendChild(svgEl('text', { x: 0, y: y + 13 }, label));
      const w = ((width - labelW - 60) * v) / max;
      svg.appendChild(svgEl('rect', { class: 'bar', x: labelW, y: y + 3, width: Math.max(w, v > 0 ? 1 : 0), height: rowH - 6 }));
      svg.appendChild(svgEl('text', { x: labelW + w + 4, y: y + 13 }, fmtInt(v)));
    });
  }

  function rate(s, prev, path) {
    if (!prev) return null;
    const dt = (s.at_ms - prev.at_ms) / 1000;
    if (dt <= 0) return null;
    return Math.max(0, num(get(s, path)) - num(get(prev, path))) / dt;
  }

  function renderEvents(s, prev) {
    const show = (id, v) => set(id, v == null ? '–' : fmtRate(v));
    show('events-in', rate(s, prev, 'events.received'));
    show('events-out', rate(s, prev, 'events.delivered'));
    show('events-published', rate(s, prev, 'events.published_http'));
    set('events-dropped', fmtInt(num(get(s, 'events.dropped'))));
    // The last minute's rates, one point per snapshot interval.
    const points = [];
    for (let i = 1; i < snaps.length; i++) {
      points.push({
        t: snaps[i].at_ms,
        in: rate(snaps[i], snaps[i - 1], 'events.received') || 0,
        out: rate(snaps[i], snaps[i - 1], 'events.delivered') || 0,
      });
    }
    lineChart($('events-chart'), points, ['in', 'out']);
  }

  function lineChart(svg, points, series) {
    const W = 400, H = 150, L = 44, B = 18, T = 6, R = 6;
    clear(svg);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const t1 = points.length ? points[points.length - 1].t : 0;
    const t0 = t1 - COUNT_WINDOW_MS;
    const max = Math.max(1, ...points.flatMap((p) => series.map((k) => p[k])));
    const x = (t) => L + ((W - L - R) * (t - t0)) / COUNT_WINDOW_MS;
    const y = (v) => H - B - ((H - B - T) * v) / max;
    svg.appendChild(svgEl('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
    svg.appendChild(svgEl('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    svg.appendChild(svgEl('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, fmtRate(max)));
    svg.appendChild(svgEl('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'));
    svg.appendChild(svgEl('text', { x: L, y: H - 4 }, '-60 s'));
    svg.appendChild(svgEl('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, 'now'));
    for (const k of series) {
      const pts = points.filter((p) => p.t >= t0);
      if (pts.length < 1) continue;
      const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p[k]).toFixed(1)}`).join(' ');
      svg.appendChild(svgEl('path', { class: k, d: pts.length === 1 ? `${d} h1` : d }));
    }
  }

  // The histogram of the window: newest minus its base, bucket by bucket.
  function windowHistogram(s, b) {
    const old = new Map((b === s ? [] : b.latency_histogram || []).map(([le, n]) => [le, n]));
    return (s.latency_histogram || [])
      .map(([le, n]) => [le, n - (old.get(le) || 0)])
      .filter(([, n]) => n > 0)
      .sort((p, q) => p[0] - q[0]);
  }

  function quantile(h, total, q) {
    const rank = Math.max(1, Math.ceil(total * q));
    let seen = 0;
    for (const [le, n] of h) {
      seen += n;
      if (seen >= rank) return le;
    }
    return h.length ? h[h.length - 1][0] : 0;
  }

  function renderLatency(s) {
    const b = snaps.length > 1 ? base(LATENCY_WINDOW_MS) : s;
    const h = windowHistogram(s, b);
    const total = h.reduce((a, [, n]) => a + n, 0);
    const secs = Math.round((s.at_ms - b.at_ms) / 1000);
    set('latency-window', b === s ? 'since start' : `last ${secs} s`);
    set('lat-count', fmtInt(total));
    for (const [id, q] of [['lat-p50', 0.5], ['lat-p90', 0.9], ['lat-p99', 0.99]]) {
      set(id, total ? fmtUs(quantile(h, total, q)) : '–');
    }
    set('lat-max', total ? fmtUs(h[h.length - 1][0]) : '–');
    histogram($('latency-histogram'), h);
  }

  // Bars over every bucket from the smallest to the largest one used, so gaps show.
  function histogram(svg, h) {
    const W = 400, H = 150, L = 44, B = 18, T = 6, R = 6;
    clear(svg);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.appendChild(svgEl('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
    if (!h.length) {
      svg.appendChild(svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no deliveries in the window'));
      return;
    }
    // Bucket bounds: 1, 2, 3, 4, then 4 per power of two (5, 6, 7, 8, 10, 12, 14, 16, ...).
    const bounds = [];
    for (let le = 1; le <= h[h.length - 1][0]; ) {
      if (le >= h[0][0]) bounds.push(le);
      const p = Math.floor(Math.log2(le));
      le = le < 4 ? le + 1 : le + Math.pow(2, p - 2);
    }
    const counts = new Map(h);
    const max = Math.max(...h.map(([, n]) => n));
    const slot = (W - L - R) / bounds.length;
    bounds.forEach((le, i) => {
      const n = counts.get(le) || 0;
      const hh = ((H - B - T) * n) / max;
      const rect = svgEl('rect', {
        class: 'bar', x: L + i * slot + 0.5, y: H - B - hh, width: Math.max(slot - 1, 1), height: hh,
      });
      rect.appendChild(svgEl('title', {}, `≤ ${fmtUs(le)}: ${fmtInt(n)}`));
      svg.appendChild(rect);
    });
    const ticks = Math.min(4, bounds.length);
    for (let k = 0; k < ticks; k++) {
      const i = Math.round((k * (bounds.length - 1)) / Math.max(1, ticks - 1));
      svg.appendChild(svgEl('text', {
        x: L + (i + 0.5) * slot, y: H - 4, 'text-anchor': k === 0 ? 'start' : k === ticks - 1 ? 'end' : 'middle',
      }, fmtUs(bounds[i])));
    }
    svg.appendChild(svgEl('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, fmtInt(max)));
    svg.appendChild(svgEl('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'));
  }

  // [label, path in the stats JSON]
  const CUTS = [
    ['cut: queue full (SSE_EVENT_BUFFER)', 'slow_consumers_cut'],
    ['cut: write too slow (SSE_WRITE_TIMEOUT)', 'write_timeouts'],
    ['conflated (older values replaced)', 'conflated'],
  ];
  const REFUSALS = [
    ['connection limit (streams)', 'rejected_connection_limit'],
    ['channel limit (streams)', 'rejected_channel_limit'],
    ['Redis down (streams)', 'redis.rejected_streams'],
    ['Redis down (publishes, 503)', 'redis.publish_failed'],
    ['Redis no answer (publishes, 504)', 'redis.publish_unknown'],
    ['pending limit (connections)', 'pending_refused'],
    ['slow request head (closed)', 'head_timeouts'],
    ['stats/metrics in flight (503)', 'queries_refused'],
    ['status page viewers (503)', 'status_viewers_refused'],
    ['HTTP 4xx/5xx answers', 'http_errors'],
  ];

  function renderCounts(id, rows) {
    const s = snaps[snaps.length - 1];
    const b = base(COUNT_WINDOW_MS);
    const body = $(id).tBodies[0];
    if (body.rows.length !== rows.length) {
      clear(body);
      for (const [label] of rows) {
        const tr = body.insertRow();
        for (let i = 0; i < 3; i++) tr.insertCell();
        tr.cells[0].textContent = label;
      }
    }
    rows.forEach(([, path], i) => {
      const total = num(get(s, path));
      const inWindow = Math.max(0, total - (b === s ? 0 : num(get(b, path))));
      const row = body.rows[i];
      row.dataset.key = path;
      row.cells[1].textContent = fmtInt(inWindow);
      row.cells[1].className = inWindow > 0 ? 'hot' : '';
      row.cells[2].textContent = fmtInt(total);
    });
  }

  function renderRedis(s) {
    const r = s.redis || {};
    const box = $('redis-cores');
    const cores = r.configured ? r.subscribed_per_core || [] : [];
    if (box.children.length !== cores.length) {
      clear(box);
      cores.forEach(() => box.appendChild(document.createElement('span')));
    }
    cores.forEach((up, i) => {
      const el = box.children[i];
      el.className = `core ${up ? 'up' : 'down'}`;
      el.textContent = `core ${i}: ${up ? 'subscribed' : 'DOWN'}`;
    });
    set('redis-note', r.configured
      ? `${fmtInt(num(r.disconnects))} disconnects, ${num(r.outage_seconds).toFixed(1)} core-seconds without a subscription, ${fmtInt(num(r.dropped))} frames dropped since start`
      : 'not configured: the embedded broker delivers within this node (EVENTS_REDIS_STORAGE unset)');
  }

  // A feed that stops (a stalled gateway, a dead proxy) says so rather than freezing.
  setInterval(() => {
    const s = snaps[snaps.length - 1];
    if (s && source && source.readyState === EventSource.OPEN
        && Date.now() - lastArrival > 3 * Math.max(num(s.period_ms), 100)) {
      state(`stale: no figures for ${Math.round((Date.now() - lastArrival) / 1000)} s`, 'wait');
    }
  }, 1000);

  connect();
})();
