import { expect, test } from '@playwright/test';

test('the traffic page charts each demo service, version and route over the last minutes', async ({ page }) => {
  await page.goto('/traffic');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId('traffic-storefront')).toBeVisible({ timeout: 2_000 });
  }).toPass({ timeout: 20_000 });
  const storefront = page.getByTestId('traffic-storefront');
  for (const chart of ['requestss', 'success', 'p50ms', 'p95ms', 'p99ms']) {
    await expect(storefront.getByTestId(`chart-${chart}`)).toBeVisible();
  }
  // Requests per second is drawn and reads above zero.
  const rps = storefront.getByTestId('chart-requestss');
  await expect(rps.locator('polyline')).toHaveCount(1);
  await expect(rps.getByTestId('chart-headline')).not.toHaveText('0.0');
  // A person can read it: times along the bottom, values with their unit up the side, which
  // line is which, and what the chart says for a screen reader.
  const ticks = await rps.locator('text.tick').allTextContents();
  expect(ticks.filter((t) => /^\d\d:\d\d(:\d\d)?$/.test(t))).toHaveLength(4);
  expect(ticks.filter((t) => /^\d+(\.\d+)?$/.test(t)).length).toBeGreaterThanOrEqual(2);
  await expect(rps.locator('.unit')).toHaveText('req/s');
  await expect(rps.locator('.legend')).toHaveText(['v1']);
  await expect(rps.locator('svg')).toHaveAttribute('aria-label', /^storefront requests \/ s\. v1: latest \d+\.\d req\/s/);
  // The value and time under the pointer.
  await rps.locator('svg').hover({ position: { x: 250, y: 60 } });
  await expect(rps.getByTestId('chart-readout')).toHaveText(/^\d\d:\d\d:\d\d UTC · v1 \d+\.\d req\/s$/);
  await rps.locator('svg').hover({ position: { x: 2, y: 2 } });
  await page.mouse.move(0, 0);
  await expect(rps.getByTestId('chart-readout')).toHaveText('');
  // Routes as the storefront's sidecar matched them, for the services it calls.
  const route = page.getByTestId('traffic-inventory').getByTestId('traffic-route').first();
  await expect(route).toContainText('(all requests)');
  // Each route also has fifteen minutes of history, drawn as sparklines with data in them.
  for (const spark of ['requestss', 'success', 'p99ms']) {
    await expect(route.getByTestId(`spark-${spark}`).locator('polyline')).toHaveAttribute('points', /\d/);
  }
});
