// Headless Chromium for the browser tests: Debian's package at /usr/bin/chromium (or
// CHROMIUM_PATH), driven by playwright-core (which never downloads a browser of its own). A
// missing binary fails the test that needs it; nothing is skipped (`npm test` checks first).
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { CHROMIUM_PATH } from '../support/services.ts'

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export interface Chromium {
  context: BrowserContext
  close(): Promise<void>
}

/** A fresh profile (its own user-data dir, removed on close) in a headless Chromium. */
export async function launchChromium(options: { viewport?: { width: number; height: number } } = {}): Promise<Chromium> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${CHROMIUM_PATH} is missing: install Debian's chromium package (apt-get install -y chromium)`)
  }
  const userDataDir = mkdtempSync(join(tmpdir(), 'relay-chromium-'))
  try {
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: ARGS,
      timeout: 30_000,
      viewport: options.viewport ?? { width: 800, height: 560 },
      deviceScaleFactor: 1,
      colorScheme: 'light',
      locale: 'en-US',
    })
    context.setDefaultTimeout(15_000)
    context.setDefaultNavigationTimeout(15_000)
    return {
      context,
      async close() {
        try {
          await context.close()
        } finally {
          rmSync(userDataDir, { recursive: true, force: true })
        }
      },
    }
  } catch (error) {
    rmSync(userDataDir, { recursive: true, force: true })
    throw error
  }
}
