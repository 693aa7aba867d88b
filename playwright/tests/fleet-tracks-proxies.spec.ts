import { expect, test } from '@playwright/test';
import { execFileSync, spawn } from 'child_process';
import * as path from 'path';
import { dataDir } from '../playwright.config';
import { PolicyRepo } from './fixtures/policy-repo';

const bin = process.env.TRELLIS_BIN ?? path.resolve(__dirname, '../../target/debug/trellis');

test('the fleet page shows a proxy arrive and go, and a commit as synced once every proxy ACKs', async ({ page, baseURL }) => {
  await page.goto('/fleet');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByTestId('proxy-inventory-v1')).toBeVisible();
  // Every demo sidecar is certified: the Certificate column and the issuer's expiry show it.
  await expect(page.getByTestId('proxy-inventory-v1').getByTestId('proxy-cert')).toHaveText(/^until /);
  await expect(page.getByTestId('proxy-inventory-v1').getByTestId('proxy-cert')).toHaveClass('cert');
  await expect(page.getByTestId('issuer-expiry')).toHaveText(/^The issuer expires /);
  await expect(page.getByTestId('anchor-expiry')).toHaveText(/^The trust anchor expires /);

  // The control plane knows proxies by their certificates: the extra sidecar joins with its
  // service's join token, as an operator would give it.
  const token = execFileSync(bin, ['join-token', 'catalog', '--data-dir', dataDir]).toString().trim();

  // An extra sidecar for a version that gets no traffic, so the demo is undisturbed.
  const proxy = spawn(path.join(path.dirname(bin), 'trellis-proxy'), [], {
    env: {
      ...process.env,
      TRELLIS_SERVICE: 'catalog',
      TRELLIS_VERSION: 'v2',
      TRELLIS_PROXY_ID: 'e2e-extra',
      TRELLIS_APP_ADDR: '127.0.0.1:9',
      TRELLIS_OUTBOUND_ADDR: '127.0.0.1:0',
      TRELLIS_INBOUND_ADDR: '127.0.0.1:0',
      TRELLIS_ADMIN_ADDR: '127.0.0.1:0',
      TRELLIS_CONTROL_PLANE_URL: baseURL!,
      TRELLIS_JOIN_TOKEN: token,
      TRELLIS_LOG: 'warn',
    },
    stdio: 'ignore',
  });
  try {
    await expect(page.getByTestId('proxy-e2e-extra')).toBeVisible({ timeout: 15_000 });
    await expect(page.getByTestId('proxy-e2e-extra').getByTestId('proxy-status')).toHaveText('synced');
    await expect(page.getByTestId('proxy-e2e-extra').getByTestId('proxy-cert')).toHaveText(/^until /);
  } finally {
    proxy.kill('SIGTERM');
  }
  await expect(page.getByTestId('proxy-e2e-extra')).toHaveCount(0, { timeout: 15_000 });

  const sha = new PolicyRepo().setInventorySplit(95, 5);
  await expect(page.getByTestId('fleet-sync-summary')).toHaveText(`4 of 4 proxies run revision ${sha.slice(0, 8)}`);
});
