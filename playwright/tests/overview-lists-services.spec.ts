import { expect, test } from '@playwright/test';
import { OverviewPage } from './fixtures/overview-page';

test('the overview lists the demo services, their versions and the proxies running them', async ({ page }) => {
  const overview = new OverviewPage(page);
  await overview.open();
  for (const name of ['storefront', 'catalog', 'inventory']) {
    await expect(overview.service(name)).toBeVisible();
  }
  await expect(overview.weight('inventory', 'v1')).toHaveText(/^\d+%$/);
  await expect(overview.weight('inventory', 'v2')).toHaveText(/^\d+%$/);
  for (const id of ['storefront-v1', 'catalog-v1', 'inventory-v1', 'inventory-v2']) {
    await expect(overview.proxy(id).getByTestId('proxy-status')).toHaveText('synced');
  }
  await expect(page.getByTestId('audit-entry').first()).toBeVisible();
});
