// Headless Chromium for the browser tests, driven by playwright-core (which never downloads a
// browser of its own): CHROMIUM_PATH, else the distribution's package, else the one inside the
// @sparticuz/chromium dev dependency (scripts/test-machine/chromium.ts; `npm test` finds it once
// and hands it over in CHROMIUM_PATH). Without any, the test that needs it fails with the line
// `npm test` would print; nothing is skipped.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { findChromiumForTests } from '../../scripts/test-machine/chromium.ts'
import { missingLine } from '../../scripts/test-machine/prerequisites.ts'

// The same flags for every Chromium, the npm package's included: its own `args` are for serverless
// hosts and turn off web security and site isolation, which the browser tests rely on; these run it
// headless here as they run the distribution's.
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

let found: Promise<string> | undefined

/** What to launch Chromium with, found once per test process. */
export async function chromiumLaunchOptions(): Promise<{ executablePath: string; args: string[] }> {
  found ??= findChromiumForTests(process.env).then((lookup) => {
    if (lookup.kind === 'found') return lookup.path
    throw new Error(lookup.kind === 'refused' ? lookup.line : missingLine(lookup.missing, { root: process.getuid?.() === 0 }))
  })
  return { executablePath: await found, args: ARGS }
}

/** A fresh profile (its own user-data dir, removed on close) in a headless Chromium. */
export async function launchChromium(options: { viewport?: { width: number; height: number } } = {}): Promise<Chromium> {
  const launch = await chromiumLaunchOptions()
  const userDataDir = mkdtempSync(join(tmpdir(), 'relay-chromium-'))
  try {
    const context = await chromium.launchPersistentContext(userDataDir, {
      ...launch,
      headless: true,
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
