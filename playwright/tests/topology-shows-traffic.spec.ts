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
  // The seeded canary splits inventory's traffic; the edge says how.
  await expect(page.getByTestId('edge-storefront-inventory')).toHaveAttribute('data-split', /^v1 \d+% · v2 \d+%$/, {
    timeout: 20_000,
  });
  await expect(page.getByTestId('topology-summary')).toContainText('figures over the last minute');

  await page.getByTestId('node-inventory').click();
  await expect(page).toHaveURL(/focus=inventory/);
  await expect(page.getByTestId('focus-line')).toContainText('Focused on inventory');
  await expect(page.getByTestId('node-details')).toContainText('inventory');
  await expect(page.getByTestId('node-details')).toContainText('all versions');
  await expect(page.getByTestId('node-details')).toContainText('Called by');
  await expect(page.getByTestId('node-storefront')).toBeVisible();
});

test('a search marks the services it finds, and the window and focus live in the address', async ({ page }) => {
  await page.goto('/topology');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await page.getByTestId('topology-search').fill('inv');
  await page.getByTestId('topology-search').press('Enter');
  await expect(page).toHaveURL(/q=inv/);
  await expect(page.getByTestId('search-line')).toContainText('1 service match “inv”');
  await expect(page.getByTestId('node-inventory')).toHaveClass(/match/);
  await expect(page.getByTestId('node-catalog')).toHaveClass(/dim/);

  await page.getByTestId('window-600').click();
  await expect(page).toHaveURL(/window=600.*q=inv/);
  await expect(page.getByTestId('topology-summary')).toContainText('figures over the last 10 minutes');
  await expect(page.getByTestId('search-line')).toContainText('1 service match');

  // A shared address opens the same view; an unknown service says so.
  await page.goto('/topology?window=60&focus=nosuch');
  await expect(page.getByTestId('focus-line')).toContainText('No traffic to or from nosuch');
  await page.getByTestId('focus-clear').click();
  await expect(page.getByTestId('node-catalog')).toBeVisible();
});
