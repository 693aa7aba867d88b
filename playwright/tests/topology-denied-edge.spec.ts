import { expect, test } from '@playwright/test';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as https from 'https';
import * as os from 'os';
import * as path from 'path';
import { dataDir } from '../playwright.config';

const bin = process.env.TRELLIS_BIN ?? path.resolve(__dirname, '../../target/debug/trellis');

/** One GET over mTLS with the certificate in `dir`, to a proxy that must be `service`. */
function mtlsGet(address: string, service: string, dir: string, urlPath: string) {
  const [host, port] = address.split(':');
  return new Promise<{ status: number; deniedBy: string | undefined }>((resolve, reject) => {
    const req = https.request(
      {
        host, port: Number(port), path: urlPath, method: 'GET',
        headers: { host: service },
        cert: fs.readFileSync(path.join(dir, 'cert.pem')),
        key: fs.readFileSync(path.join(dir, 'key.pem')),
        ca: fs.readFileSync(path.join(dir, 'anchor.pem')),
        servername: `${service}.svc.trellis.local`,
        minVersion: 'TLSv1.3',
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, deniedBy: res.headers['x-trellis-denied-by'] as string }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('a caller the access policy refuses gets 403 and shows on the topology as a denied edge', async ({ page, request }) => {
  // A certificate for catalog, from the demo's own CA: a real mesh identity, but the demo's
  // AccessPolicy lets only the storefront read inventory.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trellis-e2e-id-'));
  execFileSync(bin, ['issue-cert', 'catalog', '--data-dir', dataDir, '--out', dir]);
  const proxies = (await (await request.get('/api/v1/proxies')).json()).items;
  const inventory = proxies.find((p: { id: string }) => p.id === 'inventory-v1');

  const answer = await mtlsGet(inventory.address, 'inventory', dir, '/stock');
  expect(answer).toEqual({ status: 403, deniedBy: 'AccessPolicy/inventory-readers' });

  await page.goto('/topology');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  const edge = page.getByTestId('edge-catalog-inventory');
  await expect(edge).toHaveClass(/denied/, { timeout: 20_000 });
  await expect(edge).toContainText('denied by AccessPolicy/inventory-readers');
  // The allowed edge is still an ordinary one.
  await expect(page.getByTestId('edge-storefront-inventory')).not.toHaveClass(/denied/);
});
