import { APIRequestContext, expect, test } from '@playwright/test';
import { tokens } from '../playwright.config';
import { PolicyRepo } from './fixtures/policy-repo';
import { logIn } from './fixtures/session';

// A canary a team merges: two manual gates, then all of v2. Analyses are lenient so that only
// the operator moves it.
const ROLLOUT = `kind: Rollout
name: inventory-v2
service: inventory
stable: v1
canary: v2
steps:
  - { weight: 20, manual: true }
  - { weight: 80, manual: true }
  - { weight: 100 }
analysis: { interval: 10s, successRate: 50, p99: 5s, minRequests: 1, maxFailures: 50, maxInconclusive: 50 }
`;

/** The storefront sidecar's count of inventory requests per version, from its /metrics. */
async function counters(request: APIRequestContext): Promise<{ v1: number; v2: number }> {
  const proxies = await (await request.get('/api/v1/proxies')).json();
  const storefront = proxies.items.find((p: { id: string }) => p.id === 'storefront-v1');
  const text = await (await request.get(`http://${storefront.admin}/metrics`)).text();
  const count = (version: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('trellis_proxy_requests_total{') && l.includes('direction="outbound"'))
      .filter((l) => l.includes('dst_service="inventory"') && l.includes(`dst_version="${version}"`))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  return { v1: count('v1'), v2: count('v2') };
}

/** The share of inventory requests the storefront sent to v2 over the next few seconds. */
async function v2Share(request: APIRequestContext, seconds = 4): Promise<number> {
  const before = await counters(request);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = await counters(request);
  const [v1, v2] = [after.v1 - before.v1, after.v2 - before.v2];
  return v2 / Math.max(1, v1 + v2);
}

test('an operator promotes a canary in one click, the proxies follow, and Abort returns traffic to stable', async ({ page }) => {
  test.setTimeout(120_000);
  const repo = new PolicyRepo();
  repo.addFile('rollouts/inventory-v2.yaml', ROLLOUT, 'Canary inventory v2');
  await logIn(page, tokens.operator);
  await expect(page.getByTestId('session-user')).toHaveText('ops (operator)');

  const card = page.getByTestId('rollout-inventory-v2');
  await expect(card.getByTestId('rollout-weight-canary')).toHaveText('v2 20%', { timeout: 15_000 });
  await expect(card.getByTestId('rollout-phase')).toHaveText('awaiting-promotion');
  // Binomial(40, 0.2) stays below a half with overwhelming probability.
  await expect.poll(() => v2Share(page.request), { timeout: 20_000 }).toBeLessThan(0.5);

  await card.getByTestId('action-promote').click();
  await expect(card.getByTestId('rollout-weight-canary')).toHaveText('v2 80%');
  await expect(card.getByTestId('rollout-step')).toHaveText('step 2 of 3');
  await expect.poll(() => v2Share(page.request), { timeout: 20_000 }).toBeGreaterThan(0.5);

  // Abort asks first, then sends everything back to v1 at once.
  await card.getByTestId('action-abort').click();
  await expect(card.getByTestId('confirm')).toContainText('All traffic returns to v1');
  // The question outlives a live refresh of the page (a new analysis arriving meanwhile).
  const seen = await card.getByTestId('analysis').count();
  await expect.poll(() => card.getByTestId('analysis').count(), { timeout: 25_000 }).toBeGreaterThan(seen);
  await expect(card.getByTestId('confirm')).toBeVisible();
  // The analyses are charted against their thresholds, labelled, with a dot per verdict.
  const success = card.getByTestId('rollout-chart-success');
  await expect(success.locator('.threshold-label')).toHaveText('min 50%');
  await expect(card.getByTestId('rollout-chart-p99').locator('.threshold-label')).toHaveText('max 5000 ms');
  await expect(success.locator('circle.pass').first()).toBeVisible();
  await expect(success.locator('svg')).toHaveAttribute('aria-label', /^canary success %\. v2 \(canary\): latest \d+\.\d %/);
  await card.getByTestId('confirm-yes').click();
  await expect(card.getByTestId('rollout-phase')).toHaveText('aborted');
  await expect(card.getByTestId('rollout-weight-canary')).toHaveText('v2 0%');
  await expect(card.getByTestId('rollout-reason')).toContainText('aborted by ops');
  await expect.poll(() => v2Share(page.request, 3), { timeout: 20_000 }).toBe(0);
  // The outcome is committed to the policy repository, so git stays the truth.
  await expect.poll(() => repo.lastMessage(), { timeout: 15_000 }).toBe('Rollout inventory-v2 aborted');
  // The run stays in the history: how it ended, who acted, the weight over time, the commit.
  const run = page.getByTestId('finished-rollouts').getByTestId('finished-inventory-v2').first();
  await expect(run.getByTestId('finished-ended')).toContainText('aborted by ops at');
  await expect(run).toContainText('Operators who acted: ops');
  await expect(run.getByTestId('finished-commit')).toHaveText(repo.head().slice(0, 8));
  await expect(run.getByTestId('finished-weights').locator('svg')).toHaveAttribute(
    'aria-label', /canary weight: latest 0\.0 % \(from 0\.0 to 80\.0\)/);
  // The abort was told to both reference Notifications (the demo runs their receiver), and the
  // page lists each delivery with how it went.
  const deliveries = page.getByTestId('notification-deliveries');
  for (const name of ['canaries-to-slack', 'platform-hook']) {
    const row = deliveries.locator('tr', { hasText: name }).filter({ hasText: 'rollout-aborted' }).first();
    await expect(row).toContainText('delivered', { timeout: 15_000 });
    await expect(row).toHaveAttribute('title', /aborted by ops/);
  }
});

test('a viewer sees every rollout but no buttons, and the API refuses a viewer with 403', async ({ page }) => {
  await logIn(page, tokens.viewer);
  await expect(page.getByTestId('session-user')).toHaveText('vera (viewer)');
  const card = page.getByTestId('rollout-inventory-v2');
  await expect(card).toBeVisible();
  await expect(card.getByTestId('rollout-controls')).toHaveCount(0);

  const session = await (await page.request.get('/api/v1/session')).json();
  const withCookie = await page.request.post('/api/v1/rollouts/inventory-v2/promote', {
    headers: { 'x-csrf-token': session.csrf },
  });
  expect(withCookie.status()).toBe(403);
  expect(withCookie.headers()['content-type']).toBe('application/problem+json');
  expect((await withCookie.json()).detail).toContain('vera is a viewer');
  const withToken = await page.request.post('/api/v1/rollouts/inventory-v2/promote', {
    headers: { authorization: `Bearer ${tokens.viewer}` },
  });
  expect(withToken.status()).toBe(403);
  // A session cookie without its CSRF token changes nothing, whoever it belongs to.
  const forged = await page.request.post('/api/v1/rollouts/inventory-v2/abort');
  expect(forged.status()).toBe(401);
});

test('a rollout that ended in git before this control plane ran it says so, and how to run it again', async ({ page }) => {
  await page.goto('/rollouts');
  const card = page.getByTestId('rollout-catalog-v2');
  await expect(card.getByTestId('rollout-phase')).toHaveText('aborted');
  await expect(card.getByTestId('rollout-reason')).toContainText('aborted before this control plane ran it');
  await expect(card.getByTestId('rollout-reason')).toContainText('delete that line to run it again');
  await expect(card.getByTestId('analysis-none')).toHaveText('No analyses were made here: the outcome is recorded in git (see above).');
});
