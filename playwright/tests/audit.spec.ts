import { expect, test } from '@playwright/test';
import { PolicyRepo } from './fixtures/policy-repo';

test('the audit page filters by service and by actor, in the URL, and a rejected revision shows its errors', async ({ page }) => {
  const repo = new PolicyRepo();
  await page.goto('/audit');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByTestId('audit-event').first()).toBeVisible();

  // A pull request that should never have merged, then its revert, while the unfiltered log
  // is open: its live refresh shows them (an empty filter once broke the refresh).
  const broken = repo.addFile('routes/broken.yaml', 'kind: Route\nname: broken\nrules: [\n', 'Add a broken route');
  repo.removeFile('routes/broken.yaml', 'Revert the broken route');
  await expect(page.getByTestId('audit-summary').filter({ hasText: `rejected ${broken.slice(0, 8)}` })).toBeVisible({ timeout: 15_000 });
  await expect(page.getByTestId('audit-error')).toHaveCount(0);

  // By service, through the form: the filter lands in the URL and survives a reload.
  await page.getByTestId('filter-service').fill('inventory');
  await page.getByTestId('filter-apply').click();
  await expect(page).toHaveURL(/[?&]service=inventory/);
  await page.reload();
  await expect(page.getByTestId('filter-service')).toHaveValue('inventory');
  const services = page.getByTestId('audit-event').getByTestId('audit-service');
  await expect(services.first()).toHaveText('inventory');
  for (const s of await services.allTextContents()) expect(s).toBe('inventory');
  expect(await page.getByTestId('audit-event').count()).toBe(await services.count());

  // By actor, from a link: the control plane's own actions, together with the service filter.
  await page.getByTestId('audit-actor').filter({ hasText: 'trellis' }).first().click();
  await expect(page).toHaveURL(/actor=trellis/);
  await expect(page).toHaveURL(/service=inventory/);
  for (const a of await page.getByTestId('audit-actor').allTextContents()) expect(a).toBe('trellis');

  // The rejected revision, opened: its errors as the CLI prints them.
  await page.goto(`/audit?kind=revision.rejected&revision=${broken.slice(0, 8)}`);
  const rejected = page.getByTestId('audit-event').first();
  await expect(rejected.getByTestId('audit-summary')).toContainText(`rejected ${broken.slice(0, 8)}`, { timeout: 15_000 });
  await rejected.getByTestId('audit-summary').click();
  const error = rejected.getByTestId('audit-error-line').first();
  await expect(error).toBeVisible();
  await expect(error).toContainText('routes/broken.yaml:');
  await expect(error).toContainText('TR0001');
});

test('a date that does not exist is refused with a hint, not rolled into the next month', async ({ page }) => {
  await page.goto('/audit?since=2026-02-31');
  await expect(page.getByTestId('audit-error')).toContainText('since: "2026-02-31" is not a date');
  await expect(page.getByTestId('audit-event')).toHaveCount(0);
  await page.goto('/audit?since=2026-02-28&until=2026-11-26%20-1:00');
  await expect(page.getByTestId('audit-error')).toContainText('until: "2026-11-26 -1:00" is not a date');
  // A real date filters: nothing in the log is older than the demo, so everything is since 2020.
  await page.goto('/audit?since=2020-02-29');
  await expect(page.getByTestId('audit-error')).toHaveCount(0);
  await expect(page.getByTestId('audit-event').first()).toBeVisible();
});

test('repeated analyses are one line with a count and a time range, and "only what matters" leaves them out', async ({ page }) => {
  // The demo's canary is analysed every 10 s: give it a few.
  await page.goto('/audit?kind=rollout.analysed');
  const run = page.getByTestId('audit-run').first();
  await expect(run).toBeVisible({ timeout: 45_000 });
  const count = Number((await run.getByTestId('audit-run-count').textContent())!.replace('× ', ''));
  expect(count).toBeGreaterThanOrEqual(2);
  await expect(run).toContainText(/analysis \w+/);
  await expect(run.locator('time').first()).toContainText('–');
  // Opened, it lists each of them; the filters and export still see every event.
  await run.locator('summary').first().click();
  await expect(run.getByTestId('audit-event')).toHaveCount(count);
  const raw = await (await page.request.get('/api/v1/audit?kind=rollout.analysed&limit=200')).json();
  expect(raw.items.length).toBeGreaterThanOrEqual(count);

  // Only what matters: no analysis, no proxy joining; the overview lists the same kind of thing.
  await page.goto('/audit?significant=true');
  await expect(page.getByTestId('filter-significant')).toBeChecked();
  await expect(page.getByTestId('audit-event').first()).toBeVisible();
  for (const kind of await page.getByTestId('audit-kind').allTextContents()) {
    expect(['rollout.analysed', 'proxy.joined', 'proxy.left', 'revision.synced']).not.toContain(kind);
  }
  await expect(page.getByTestId('audit-event').first()).toHaveClass(/significant/);
  const overview = await (await page.request.get('/api/v1/overview')).json();
  for (const e of overview.audit) expect(e.kind).not.toBe('rollout.analysed');
});
