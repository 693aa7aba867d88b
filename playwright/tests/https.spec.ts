import { expect, test } from '@playwright/test';
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as path from 'path';
import { tokens } from '../playwright.config';
import { bin, freshPolicyRepo, serveEnv, stop } from './fixtures/own-server';

// A control plane of its own served over HTTPS (`trellis serve --tls-cert --tls-key`) with a
// certificate made here for localhost: the dashboard hydrates over TLS under its
// Content-Security-Policy, every answer carries HSTS, and the session cookie is Secure.
const port = Number(process.env.TRELLIS_E2E_HTTPS_PORT ?? 18443);
const base = `https://localhost:${port}`;
let server: ChildProcess;

test.use({ ignoreHTTPSErrors: true });

test.beforeAll(async ({ request }) => {
  test.setTimeout(60_000);
  const { dir, repo } = freshPolicyRepo('e2e-https');
  const [cert, key] = [path.join(dir, 'tls.crt'), path.join(dir, 'tls.key')];
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { stdio: 'ignore' });
  const env = serveEnv({ TRELLIS_TOKENS: `ops:operator:${tokens.operator}` });
  server = spawn(bin, [
    'serve', '--repo', repo, '--data-dir', path.join(dir, 'data'), '--listen', `127.0.0.1:${port}`,
    '--fleet-listen', '127.0.0.1:0', '--tls-cert', cert, '--tls-key', key,
  ], { env, stdio: 'ignore' });
  await expect
    .poll(async () => (await request.get(`${base}/api/v1/overview`).catch(() => null))?.status(), { timeout: 30_000 })
    .toBe(200);
});

test.afterAll(async () => stop(server));

test('the dashboard served over HTTPS hydrates, sends HSTS and keeps its session cookie Secure', async ({
  page,
  context,
}) => {
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to|Mixed Content/i.test(m.text())) violations.push(m.text());
  });
  const response = await page.goto(`${base}/login`);
  expect(response!.headers()['strict-transport-security']).toBe('max-age=31536000');
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');

  await page.getByTestId('login-token').fill(tokens.operator);
  await page.getByTestId('login-submit').click();
  await expect(page).toHaveURL(/\/rollouts$/);
  await expect(page.getByTestId('session-user')).toHaveText('ops (operator)');
  const session = (await context.cookies(base)).find((c) => c.httpOnly);
  expect(session, 'the session cookie').toBeTruthy();
  expect(session!.secure).toBe(true);
  expect(session!.sameSite).toBe('Strict');

  // The API answers over the same TLS with the same header.
  const api = await page.request.get(`${base}/api/v1/overview`);
  expect(api.headers()['strict-transport-security']).toBe('max-age=31536000');
  expect(violations).toEqual([]);
});
