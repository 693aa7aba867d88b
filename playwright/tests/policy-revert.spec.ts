import { expect, test } from '@playwright/test';
import { tokens } from '../playwright.config';
import { PolicyPage } from './fixtures/policy-page';
import { PolicyRepo } from './fixtures/policy-repo';
import { logIn } from './fixtures/session';

test('any two revisions compare side by side, and an operator reverts to an earlier one in one click', async ({ page }) => {
  const repo = new PolicyRepo();
  const half = repo.setInventorySplit(50, 50);
  const tenth = repo.setInventorySplit(90, 10);
  const policy = new PolicyPage(page);
  await policy.open();
  await expect(policy.appliedSha()).toHaveText(tenth.slice(0, 8));
  await expect(policy.revision(half).getByTestId('revert')).toHaveCount(0); // a viewer has no revert

  // From the history: the earlier revision against the one in force, in trellis diff's words
  // and line by line.
  await policy.revision(half).getByTestId('compare-with-in-force').click();
  await expect(page).toHaveURL(new RegExp(`from=${half}&to=${tenth}`));
  const comparison = page.getByTestId('comparison');
  await expect(comparison.getByRole('heading', { level: 2 })).toHaveText(`${half.slice(0, 8)} → ${tenth.slice(0, 8)}`);
  await expect(comparison.getByTestId('changes')).toContainText('inventory (all requests): 40% moves from v2 to v1');
  const file = comparison.getByTestId('diff-file');
  await expect(file).toHaveCount(1);
  await expect(file.locator('summary')).toContainText('routes/inventory.yaml modified');
  const rows = file.locator('tr.changed');
  await expect(rows).toHaveCount(2);
  await expect(rows.first().locator('td.del')).toHaveText('        weight: 50');
  await expect(rows.first().locator('td.ins')).toHaveText('        weight: 90');

  // Any two, from the form: the other way round.
  await page.getByTestId('compare-from').selectOption(tenth);
  await page.getByTestId('compare-to').selectOption(half);
  await page.getByTestId('compare-submit').click();
  await expect(comparison.getByRole('heading', { level: 2 })).toHaveText(`${tenth.slice(0, 8)} → ${half.slice(0, 8)}`);
  await expect(rows.first().locator('td.ins')).toHaveText('        weight: 50');

  // An operator reverts to the half split: asked first, then one commit on the branch,
  // applied like any other, audited with the operator's name.
  await logIn(page, tokens.operator);
  await policy.open();
  const revert = policy.revision(half).getByTestId('revert');
  await revert.click();
  await expect(page.getByTestId('confirm')).toContainText(`Revert the policy to ${half.slice(0, 8)}?`);
  await page.getByTestId('confirm-yes').click();
  await expect(page.getByTestId('revert-outcome')).toContainText(`restoring ${half.slice(0, 8)}'s policy`);
  await expect.poll(() => repo.lastMessage()).toBe(`Revert to ${half.slice(0, 8)}: Inventory split 50/50`);
  const reverted = repo.head();
  await expect(policy.appliedSha()).toHaveText(reverted.slice(0, 8));
  await expect(page.getByTestId('policy-applied').getByTestId('changes')).toContainText('inventory (all requests): 40% moves from v1 to v2');
  await page.goto('/audit?kind=revision.reverted');
  await expect(page.getByTestId('audit-timeline')).toContainText(`ops reverted the policy to ${half.slice(0, 8)}`);

  repo.setInventorySplit(100, 0);
});
