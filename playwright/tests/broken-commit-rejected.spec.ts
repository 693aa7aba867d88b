import { expect, test } from '@playwright/test';
import { OverviewPage } from './fixtures/overview-page';
import { PolicyRepo } from './fixtures/policy-repo';

test('a broken commit is shown as rejected with its error, and the applied revision stays', async ({ page }) => {
  const repo = new PolicyRepo();
  const overview = new OverviewPage(page);
  await overview.open();
  const applied = repo.head().slice(0, 8);
  await expect(overview.appliedSha()).toHaveText(applied);
  const v2Before = await overview.weight('inventory', 'v2').textContent();

  const broken = repo.commitFile('routes/inventory.yaml', 'kind: Route\nname: inventory\nrules: [\n', 'Break the route');

  await expect(overview.rejection()).toBeVisible();
  await expect(page.getByTestId('rejected-revision-sha')).toHaveText(broken.slice(0, 8));
  await expect(page.getByTestId('rejection-error').first()).toContainText('routes/inventory.yaml:');
  await expect(page.getByTestId('rejection-error').first()).toContainText('TR0001');
  await expect(overview.appliedSha()).toHaveText(applied);
  await expect(overview.weight('inventory', 'v2')).toHaveText(v2Before!);

  // Fixing it clears the rejection.
  repo.setInventorySplit(100, 0);
  await expect(overview.rejection()).toBeHidden();
  await expect(overview.weight('inventory', 'v2')).toHaveText('0%');
});
