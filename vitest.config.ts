import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Two cores: run files two at a time so peers (oidc-provider, MCP servers, Chromium) fit.
    maxWorkers: 2,
  },
})
