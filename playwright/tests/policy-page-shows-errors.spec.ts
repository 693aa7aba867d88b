import { expect, test } from '@playwright/test';
import { PolicyPage } from './fixtures/policy-page';
import { PolicyRepo } from './fixtures/policy-repo';

test('the policy page shows what a revision changed, and a rejected one with its errors as the CLI prints them', async ({ page }) => {
  const repo = new PolicyRepo();
  const policy = new PolicyPage(page);
  await policy.open();
  await expect(page.getByTestId('policy-file').first()).toBeVisible();

  const applied = repo.setInventorySplit(80, 20);
  await expect(policy.appliedSha()).toHaveText(applied.slice(0, 8));
  await expect(page.getByTestId('policy-applied').getByTestId('changes')).toContainText('inventory (all requests):');

  const broken = repo.commitFile(
    'routes/inventory.yaml',
    'kind: Route\nname: inventory\nservice: inventory\nrules:\n  - backends:\n      - version: v9\n        weight: 100\n',
    'Route to a version that does not exist',
  );
  const errors = policy.revision(broken).getByTestId('revision-errors');
  await expect(errors).toContainText('error[TR0103]: service `inventory` has no version `v9`');
  await expect(errors).toContainText('--> routes/inventory.yaml:6:18');
  await expect(errors).toContainText('^^');
  await expect(policy.appliedSha()).toHaveText(applied.slice(0, 8));

  repo.setInventorySplit(100, 0);
});
