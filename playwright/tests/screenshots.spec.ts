import { expect, test } from '@playwright/test';
import * as path from 'path';
import { dataDir } from '../playwright.config';

// Every page at 1400 px wide, kept beside the build (target/screenshots) so a person can look
// at what CI saw.
const dir = path.join(path.dirname(dataDir), 'screenshots');

test('every page renders at 1400 px wide, kept as a screenshot', async ({ page }) => {
  await page.setViewportSize({ width: 1400, height: 1000 });
  for (const [name, url] of [
    ['overview', '/'],
    ['topology', '/topology'],
    ['traffic', '/traffic'],
    ['fleet', '/fleet'],
    ['rollouts', '/rollouts'],
    ['policy', '/policy'],
    ['audit', '/audit'],
    ['login', '/login'],
  ]) {
    await page.goto(url);
    await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
    await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
  }
});
