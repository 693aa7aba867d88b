// The topology page in Debian's Chromium, for bench/topology.sh (run by `topologysim`, which
// passes the control plane's URL, a service it will make fail, and the seconds to watch).
// Prints "watching" once it listens for changes, then one JSON object:
// - first_paint_ms: first contentful paint of /topology, each of three loads (the first one
//   also compiles the bundle) and their median;
// - graph_painted_ms: the same loads, until the frame after the whole graph is in the page
//   (the first paint may come before the graph has arrived);
// - hydrated_ms: when the page became interactive on the last load;
// - sse_to_visible_ms: for each server-sent event, how long until the graph was redrawn;
// - failure_visible_ms: from "watching" until the failing service's node turned red (this
//   includes the proxies' 2 s report interval and the 3 s settling of figures).
const { chromium } = require('@playwright/test');

const [base, failing, seconds] = process.argv.slice(2);
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : null;
};
const round = (x) => (x === null ? null : Math.round(x));

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    // Before the page's own scripts (and outside its CSP): note the frame after the graph's
    // last node arrives.
    await page.addInitScript(() => {
      new MutationObserver((_, observer) => {
        const graph = document.querySelector('svg.topology');
        if (graph && document.readyState !== 'loading') {
          observer.disconnect();
          requestAnimationFrame(() => { window.__graphAt = performance.now(); });
        }
      }).observe(document, { childList: true, subtree: true });
      document.addEventListener('DOMContentLoaded', () => {
        if (document.querySelector('svg.topology') && !window.__graphAt) {
          requestAnimationFrame(() => { window.__graphAt = window.__graphAt ?? performance.now(); });
        }
      });
    });
    const paints = [];
    const graphs = [];
    let hydrated = null;
    for (let i = 0; i < 3; i++) {
      await page.goto(`${base}/topology`, { waitUntil: 'load' });
      await page.waitForSelector('body[data-hydrated="true"]');
      await page.waitForFunction(() => window.__graphAt !== undefined);
      const t = await page.evaluate(() => new Promise((resolve) => {
        const done = () => {
          const fcp = performance.getEntriesByName('first-contentful-paint')[0];
          if (fcp) resolve({ fcp: fcp.startTime, graph: window.__graphAt, now: performance.now() });
          return fcp;
        };
        if (!done()) new PerformanceObserver(done).observe({ type: 'paint', buffered: true });
      }));
      paints.push(t.fcp);
      graphs.push(t.graph);
      hydrated = t.now;
    }
    const nodes = await page.locator('svg.topology [data-testid^="node-"]').count();
    await page.evaluate(() => {
      window.__events = [];
      window.__draws = [];
      const source = new EventSource('/api/v1/events');
      source.onmessage = () => window.__events.push(performance.now());
      new MutationObserver(() => window.__draws.push(performance.now())).observe(
        document.querySelector('section.card'), { childList: true, subtree: true });
    });
    console.log('watching');
    const watched = Date.now();
    await page.locator(`svg.topology [data-testid="node-${failing}"][class~="failing"]`).waitFor({ timeout: 60_000 });
    const failureVisible = Date.now() - watched;
    await page.waitForTimeout(Number(seconds) * 1000);
    const { events, draws } = await page.evaluate(() => ({ events: window.__events, draws: window.__draws }));
    // Events that came before the last redraw, each with the redraw that followed it.
    const delays = events.map((e) => draws.find((d) => d >= e)).map((d, i) => (d === undefined ? null : d - events[i]))
      .filter((d) => d !== null);
    console.log(JSON.stringify({
      nodes,
      first_paint_ms: { runs: paints.map(round), median: round(quantile(paints, 0.5)) },
      graph_painted_ms: { runs: graphs.map(round), median: round(quantile(graphs, 0.5)) },
      hydrated_ms: round(hydrated),
      sse_to_visible_ms: { events: events.length, p50: round(quantile(delays, 0.5)), max: round(Math.max(...delays, 0)), each: delays.map(round) },
      failure_visible_ms: failureVisible,
    }));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(`topology.js: ${e.message}`);
  process.exit(1);
});
