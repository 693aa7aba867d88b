import { expect, test } from '@playwright/test';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { bin, freshPolicyRepo, serveEnv, stop } from './fixtures/own-server';

// A control plane of its own with TRELLIS_PROMETHEUS_URL, and Debian's Prometheus beside it:
// the Traffic page offers longer ranges, keeps the chosen one in the address, and says so
// plainly when Prometheus cannot be reached.
const port = Number(process.env.TRELLIS_E2E_HISTORY_PORT ?? 18444);
const promPort = port + 50;
const base = `http://127.0.0.1:${port}`;
let server: ChildProcess;
let prometheus: ChildProcess;

test.beforeAll(async ({ request }) => {
  test.setTimeout(60_000);
  const { dir, repo } = freshPolicyRepo('e2e-history');
  fs.writeFileSync(path.join(dir, 'prometheus.yml'),
    `global: { scrape_interval: 1s }\nscrape_configs:\n  - job_name: trellis\n    static_configs: [{ targets: ['127.0.0.1:${port}'] }]\n`);
  prometheus = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`], { stdio: 'ignore' });
  const env = serveEnv({ TRELLIS_PROMETHEUS_URL: `http://127.0.0.1:${promPort}` });
  server = spawn(bin, ['serve', '--repo', repo, '--data-dir', path.join(dir, 'data'), '--listen', `127.0.0.1:${port}`,
    '--fleet-listen', '127.0.0.1:0'], { env, stdio: 'ignore' });
  for (const url of [`${base}/api/v1/overview`, `http://127.0.0.1:${promPort}/-/ready`]) {
    await expect.poll(async () => (await request.get(url).catch(() => null))?.status(), { timeout: 30_000 }).toBe(200);
  }
});

test.afterAll(async () => {
  await stop(server);
  await stop(prometheus);
});

test('with a Prometheus the Traffic page reaches back hours, and says so when it cannot', async ({ page }) => {
  await page.goto(`${base}/traffic`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByTestId('range-15m')).toHaveClass(/active/);
  await page.getByTestId('range-1h').click();
  await expect(page).toHaveURL(/range=1h/);
  await expect(page.getByTestId('range-1h')).toHaveClass(/active/);
  // Nothing in this mesh sends requests: an hour of nothing, said as such.
  await expect(page.getByTestId('traffic-empty')).toHaveText('No traffic reported in the last 1 h.');

  await stop(prometheus);
  await page.goto(`${base}/traffic?range=6h`);
  await expect(page.getByTestId('traffic-error')).toContainText(`cannot reach Prometheus at http://127.0.0.1:${promPort}`);
  await page.getByRole('link', { name: 'Show the last 15 minutes' }).click();
  await expect(page.getByTestId('range-15m')).toHaveClass(/active/);
});
