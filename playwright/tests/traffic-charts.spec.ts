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
  await expect(storefront.getByTestId('chart-requestss').locator('polyline')).toHaveCount(1);
  await expect(storefront.getByTestId('chart-requestss').locator('strong')).not.toHaveText(' 0.0');
  // Routes as the storefront's sidecar matched them, for the services it calls.
  const route = page.getByTestId('traffic-inventory').getByTestId('traffic-route').first();
  await expect(route).toContainText('(all requests)');
  // Each route also has fifteen minutes of history, drawn as sparklines with data in them.
  for (const spark of ['requestss', 'success', 'p99ms']) {
    await expect(route.getByTestId(`spark-${spark}`).locator('polyline')).toHaveAttribute('points', /\d/);
  }
});
