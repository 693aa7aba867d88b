import { defineConfig } from '@playwright/test';
import * as path from 'path';

// The demo the tests run against: `trellis demo` with its own data directory and port.
const target = process.env.CARGO_TARGET_DIR ?? path.resolve(__dirname, '../target');
const bin = process.env.TRELLIS_BIN ?? path.join(target, 'debug/trellis');
export const dataDir = process.env.TRELLIS_E2E_DATA_DIR ?? path.join(target, 'e2e-demo');
const port = Number(process.env.TRELLIS_E2E_PORT ?? 18080);
/** The demo's users for these tests: an operator and a viewer. */
export const tokens = { operator: 'e2e-operator-token-0123456789', viewer: 'e2e-viewer-token-00123456789' };

export default defineConfig({
  testDir: './tests',
  // The specs share one demo mesh and commit to its repository: one at a time.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    browserName: 'chromium',
    launchOptions: {
      // Debian's Chromium; never a downloaded browser.
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-quic', '--no-first-run',
      ],
    },
  },
  webServer: {
    command: `"${bin}" demo --data-dir "${dataDir}" --listen 127.0.0.1:${port} --rps 10`,
    url: `http://127.0.0.1:${port}/api/v1/overview`,
    timeout: 60_000,
    reuseExistingServer: false,
    stdout: 'pipe',
    env: {
      TRELLIS_SITE_ROOT: process.env.TRELLIS_SITE_ROOT ?? path.join(target, 'site'),
      TRELLIS_TOKENS: `ops:operator:${tokens.operator},vera:viewer:${tokens.viewer}`,
    },
  },
});
