import { expect, test } from '@playwright/test';

test('the topology shows the demo services and edges carrying traffic, and a node its golden metrics', async ({ page }) => {
  await page.goto('/topology');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  for (const service of ['storefront', 'catalog', 'inventory']) {
    await expect(page.getByTestId(`node-${service}`)).toBeVisible();
  }
  // The load generator keeps traffic flowing; telemetry arrives every two seconds.
  for (const callee of ['catalog', 'inventory']) {
    await expect(async () => {
      const rps = Number(await page.getByTestId(`edge-storefront-${callee}`).getAttribute('data-rps'));
      expect(rps).toBeGreaterThan(0);
    }).toPass({ timeout: 20_000 });
  }
  await page.getByTestId('node-inventory').click();
  await expect(page.getByTestId('node-details')).toContainText('inventory');
  await expect(page.getByTestId('node-details')).toContainText('all versions');
});
