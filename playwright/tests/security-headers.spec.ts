import { expect, test } from '@playwright/test';

// Every page hydrates under its Content-Security-Policy (a nonce for the server's scripts,
// WebAssembly allowed, nothing from elsewhere) without one violation, and none can be framed.
test('every page hydrates under a strict Content-Security-Policy and refuses framing', async ({ page }) => {
  const violations: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  for (const path of ['/', '/topology', '/traffic', '/rollouts', '/fleet', '/policy', '/audit', '/login']) {
    const response = await page.goto(path);
    const headers = response!.headers();
    const csp = headers['content-security-policy'] ?? '';
    expect(csp, path).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9+/=_-]+' 'wasm-unsafe-eval'/);
    expect(csp, path).toContain("frame-ancestors 'none'");
    expect(headers['x-frame-options'], path).toBe('DENY');
    expect(headers['x-content-type-options'], path).toBe('nosniff');
    await expect(page.locator('body'), path).toHaveAttribute('data-hydrated', 'true');
  }
  // Each page has a nonce of its own.
  const nonce = async () => (await page.goto('/'))!.headers()['content-security-policy'].match(/nonce-([^']+)/)![1];
  expect(await nonce()).not.toBe(await nonce());
  expect(violations).toEqual([]);
  // The API's answers carry the same framing and sniffing headers.
  const api = await page.request.get('/api/v1/overview');
  expect(api.headers()['x-frame-options']).toBe('DENY');
});
