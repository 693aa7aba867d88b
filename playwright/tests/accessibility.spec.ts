import AxeBuilder from '@axe-core/playwright';
import { expect, test, type Page } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';
import { tokens } from '../playwright.config';
import { PolicyRepo } from './fixtures/policy-repo';
import { logIn } from './fixtures/session';

const PAGES = ['/', '/topology', '/traffic', '/fleet', '/rollouts', '/policy', '/audit', '/login'];

/** axe-core's serious and critical findings on the page as it is now, one line each. */
async function violations(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
}

async function open(page: Page, path: string) {
  await page.goto(path);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
}

test('no page has a serious or critical accessibility violation, as a viewer or an operator', async ({ page }) => {
  test.setTimeout(120_000);
  const found: string[] = [];
  for (const path of PAGES) {
    await open(page, path);
    found.push(...(await violations(page)).map((v) => `${path}: ${v}`));
  }
  // What only some see: a comparison, an operator's buttons and a question asked.
  // (A comment, not a split: the seeded canary keeps analysing for the specs that follow.)
  const repo = new PolicyRepo();
  const before = repo.head();
  const mesh = fs.readFileSync(path.join(repo.dir, 'mesh.yaml'), 'utf8');
  const after = repo.commitFile('mesh.yaml', `${mesh}# Reviewed for accessibility.\n`, 'Note the review');
  await expect.poll(async () => (await page.request.get(`/api/v1/revisions/${after}`)).status()).toBe(200);
  await open(page, `/policy?from=${before}&to=${after}`);
  await expect(page.getByTestId('comparison')).toBeVisible();
  found.push(...(await violations(page)).map((v) => `/policy (compared): ${v}`));
  await logIn(page, tokens.operator);
  found.push(...(await violations(page)).map((v) => `/rollouts (operator): ${v}`));
  await open(page, '/policy');
  await page.getByTestId('revert').first().click();
  found.push(...(await violations(page)).map((v) => `/policy (operator, confirming): ${v}`));
  await page.getByTestId('confirm-no').click();
  expect(found).toEqual([]);
});

test('the dashboard works from the keyboard: navigation, login and the charts\' text', async ({ page }) => {
  await open(page, '/');
  // Tab to the Traffic link and follow it.
  let name = '';
  for (let i = 0; i < 12 && name !== 'Traffic'; i++) {
    await page.keyboard.press('Tab');
    name = await page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');
  }
  expect(name).toBe('Traffic');
  await page.keyboard.press('Enter');
  await expect(page).toHaveURL(/\/traffic$/);
  // Every chart says in words what it shows.
  await expect(page.locator('figure.chart svg').first()).toHaveAttribute('aria-label', /\. \S+: (latest|no data)/);

  // Log in without a mouse: the token field, then Enter.
  await open(page, '/login');
  await page.getByTestId('login-token').focus();
  await page.keyboard.type(tokens.viewer);
  await page.keyboard.press('Enter');
  await expect(page.getByTestId('session-user')).toHaveText('vera (viewer)');
});
