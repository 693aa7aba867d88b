import { expect, test } from '@playwright/test';
import { OverviewPage } from './fixtures/overview-page';
import { PolicyRepo } from './fixtures/policy-repo';

test('a commit shows as the new revision and weights without a reload', async ({ page }) => {
  const repo = new PolicyRepo();
  const overview = new OverviewPage(page);
  await overview.open();
  await expect(overview.appliedSha()).toHaveText(repo.head().slice(0, 8));
  await overview.markWindow();

  // A split the repository does not have yet, so the change is visible whatever ran before.
  const current = await overview.weight('inventory', 'v2').textContent();
  const v2 = current === '30%' ? 70 : 30;
  const sha = repo.setInventorySplit(100 - v2, v2);

  await expect(overview.appliedSha()).toHaveText(sha.slice(0, 8));
  await expect(overview.weight('inventory', 'v1')).toHaveText(`${100 - v2}%`);
  await expect(overview.weight('inventory', 'v2')).toHaveText(`${v2}%`);
  await expect(overview.proxy('storefront-v1').getByTestId('proxy-revision')).toHaveText(sha.slice(0, 8));
  // The audit card shows the revision applied (and, right after, the fleet synced on it).
  await expect(page.getByTestId('audit-entry').filter({ hasText: `applied ${sha.slice(0, 8)}` })).toHaveCount(1);
  await overview.expectNotReloaded();
});
