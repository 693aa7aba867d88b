import { expect, test } from '@playwright/test';
import { PolicyRepo } from './fixtures/policy-repo';

test('rate limits show on the traffic page with the callers they refused', async ({ page }) => {
  const repo = new PolicyRepo();
  await page.goto('/traffic');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  // The demo's own limit on inventory, in words; its storefront stays well under it.
  const inventory = page.getByTestId('traffic-inventory');
  await expect(inventory.getByTestId('traffic-rate-limits')).toContainText(
    'TrafficPolicy/inventory: 50000/s in all, 10000/s (bursts of 5000) per caller, 40000/s for storefront',
    { timeout: 20_000 },
  );
  await expect(inventory.getByTestId('traffic-limited-none')).toBeVisible();

  // Hold each caller of catalog to 2 requests a second: the demo's storefront sends it about 10.
  repo.addFile(
    'policies/catalog.yaml',
    'kind: TrafficPolicy\nname: catalog\nservice: catalog\nrateLimit:\n  perCaller: { requestsPerSecond: 2 }\n',
    'catalog: at most 2 requests a second per caller',
  );
  try {
    const refused = page.getByTestId('traffic-catalog').getByTestId('limited-storefront');
    await expect(async () => {
      await page.reload();
      await expect(refused).toBeVisible({ timeout: 2_000 });
    }).toPass({ timeout: 30_000 });
    await expect(refused).toContainText('TrafficPolicy/catalog');
    await expect(page.getByTestId('traffic-catalog').getByTestId('traffic-rate-limits')).toContainText(
      'TrafficPolicy/catalog: 2/s per caller',
    );
  } finally {
    repo.removeFile('policies/catalog.yaml', 'catalog: no rate limit');
  }
});
