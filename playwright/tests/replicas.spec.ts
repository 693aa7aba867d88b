import { expect, test } from '@playwright/test';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tokens } from '../playwright.config';

// A demo of its own with two control-plane replicas (127.0.0.1 and 127.0.0.2, one port) on a
// Postgres cluster the demo starts: what a load balancer in front of replicas does to a
// browser (its next request lands on another replica) is done here by hand.
const target = process.env.CARGO_TARGET_DIR ?? path.resolve(__dirname, '../../target');
const bin = process.env.TRELLIS_BIN ?? path.join(target, 'debug/trellis');
const port = Number(process.env.TRELLIS_E2E_REPLICAS_PORT ?? 18180);
const [first, second] = [`http://127.0.0.1:${port}`, `http://127.0.0.2:${port}`];
let demo: ChildProcess;

test.beforeAll(async ({ request }) => {
  test.setTimeout(120_000);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TRELLIS_SITE_ROOT: process.env.TRELLIS_SITE_ROOT ?? path.join(target, 'site'),
    TRELLIS_TOKENS: `ops:operator:${tokens.operator},vera:viewer:${tokens.viewer}`,
  };
  delete env.DATABASE_URL;
  const dir = path.join(target, 'e2e-replicas');
  // Fresh each run: the canary starts at its first step.
  fs.rmSync(dir, { recursive: true, force: true });
  demo = spawn(bin, ['demo', '--replicas', '2', '--data-dir', dir, '--listen', `127.0.0.1:${port}`, '--rps', '10'], {
    env,
    stdio: 'ignore',
  });
  for (const url of [first, second]) {
    await expect
      .poll(async () => (await request.get(`${url}/api/v1/fleet`).catch(() => null))?.status(), { timeout: 90_000 })
      .toBe(200);
  }
});

test.afterAll(async () => {
  if (demo && demo.exitCode === null) {
    const exited = new Promise((r) => demo.once('exit', r));
    demo.kill('SIGTERM');
    await exited;
  }
});

test('an operator logs in on one replica and promotes the canary through another', async ({ page, context, request }) => {
  test.setTimeout(90_000);
  // Both replicas know each other, and one of them leads.
  for (const url of [first, second]) {
    await expect
      .poll(async () => (await (await request.get(`${url}/api/v1/fleet`)).json()).control_plane.replicas.length, {
        timeout: 30_000,
      })
      .toBe(2);
  }

  await page.goto(`${first}/login`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await page.getByTestId('login-token').fill(tokens.operator);
  await page.getByTestId('login-submit').click();
  await expect(page).toHaveURL(/\/rollouts$/);

  // The load balancer sends the browser's next requests to the other replica, with its cookie.
  const cookies = await context.cookies(first);
  await context.addCookies(cookies.map((c) => ({ ...c, domain: '127.0.0.2' })));
  await page.goto(`${second}/rollouts`);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.getByTestId('session-user')).toHaveText('ops (operator)');
  const card = page.getByTestId('rollout-inventory-v2');
  await expect(card.getByTestId('rollout-weight-canary')).toHaveText('v2 10%', { timeout: 30_000 });
  await expect(card.getByTestId('rollout-phase')).toHaveText('awaiting-promotion');
  await card.getByTestId('action-promote').click();
  await expect(card.getByTestId('rollout-weight-canary')).toHaveText('v2 50%');

  // The first replica shows the same within moments (it hears of the change by NOTIFY, or
  // at the latest on its next look a second later), and the audit log names the operator.
  await expect
    .poll(async () => (await (await request.get(`${first}/api/v1/rollouts/inventory-v2`)).json()).canary_weight, {
      timeout: 5_000,
    })
    .toBe(50);
  await expect
    .poll(async () => {
      const audit = await (await request.get(`${first}/api/v1/audit?kind=rollout.action`)).json();
      return audit.items.map((e: { actor: string; kind: string }) => `${e.actor} ${e.kind}`);
    })
    .toContain('ops rollout.action.promote');

  // The Fleet page of either replica lists both, one leading.
  await page.goto(`${second}/fleet`);
  await expect(page.getByTestId('replica')).toHaveCount(2);
  await expect(page.getByTestId('replica-role').filter({ hasText: 'leader' })).toHaveCount(1);
  await expect(page.getByTestId('control-plane-leader')).toContainText('leads (term');
});
