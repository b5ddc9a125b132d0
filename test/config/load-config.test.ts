import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/load-config.ts'

const KEY = 'k'.repeat(24)
const server = { server_id: 'docs', mcp_url: 'https://docs.example.com/mcp' }
const json = (document: unknown) => JSON.stringify(document)

function load(env: Record<string, string | undefined>) {
  return loadConfig({ RELAY_API_KEYS: KEY, ...env })
}

describe('loadConfig', () => {
  it('applies the defaults of DESIGN.md §3', () => {
    const config = load({ MCP_SERVERS_JSON: json({ servers: [server] }) })
    expect(config).toMatchObject({
      port: 8787,
      host: '0.0.0.0',
      publicBaseUrl: 'http://localhost:8787',
      callbackUrl: 'http://localhost:8787/oauth/callback',
      storeUrl: 'sqlite://./data/relay.sqlite',
      toolListCacheTtlMs: 300_000,
      upstreamTimeoutMs: 50_000,
      toolResultInlineBytes: 8192,
      pool: { maxSessions: 1000, idleMs: 300_000 },
      clientMetadataUrl: undefined,
      logLevel: 'info',
    })
    expect(config.apiKeys).toEqual([{ tenant: 'default', key: KEY }])
    expect(config.servers.get('docs')).toMatchObject({ serverId: 'docs', description: '', toolCache: 'server' })
    expect(Object.isFrozen(config)).toBe(true)
  })

  it('reads TOOL_RESULT_INLINE_BYTES as a byte count from 0 to 16 MiB, naming the variable otherwise', () => {
    expect(load({ TOOL_RESULT_INLINE_BYTES: '0' }).toolResultInlineBytes).toBe(0)
    expect(load({ TOOL_RESULT_INLINE_BYTES: '65536' }).toolResultInlineBytes).toBe(65536)
    for (const bad of ['-1', '1.5', 'lots', String(16 * 1024 * 1024 + 1)]) {
      expect(() => load({ TOOL_RESULT_INLINE_BYTES: bad }), bad).toThrow(/^TOOL_RESULT_INLINE_BYTES: /)
    }
  })

  it('derives the callback and client metadata URLs from PUBLIC_BASE_URL', () => {
    const config = load({ PUBLIC_BASE_URL: 'https://relay.example.com/base/' })
    expect(config.callbackUrl).toBe('https://relay.example.com/base/oauth/callback')
    expect(config.clientMetadataUrl).toBe('https://relay.example.com/base/oauth/client-metadata.json')
  })

  it('generates an API key when RELAY_API_KEYS is unset, and reads name:key tenants', () => {
    const generated = loadConfig({})
    expect(generated.generatedApiKey?.key).toMatch(/^[A-Za-z0-9_-]{32}$/)
    expect(generated.apiKeys).toEqual([generated.generatedApiKey])
    expect(loadConfig({}).generatedApiKey?.key).not.toBe(generated.generatedApiKey?.key)
    const named = loadConfig({ RELAY_API_KEYS: ` acme:${KEY}1 , ${KEY}2 ` })
    expect(named.apiKeys).toEqual([{ tenant: 'acme', key: `${KEY}1` }, { tenant: 'default', key: `${KEY}2` }])
    expect(named.generatedApiKey).toBeUndefined()
  })

  it.each([
    ['{ servers: [...] }', { servers: [server] }],
    ['a bare array', [server]],
    ['{ sets: [...] }', { sets: [server] }],
    ['the aliases id, url and auth_url', [{ id: 'docs', url: server.mcp_url, auth_url: 'https://sso.example.com/a', token_url: 'https://sso.example.com/t' }]],
  ])('accepts the plugin\'s servers JSON as %s', (_name, document) => {
    const config = load({ MCP_SERVERS_JSON: json(document) })
    expect(config.servers.get('docs')?.mcpUrl).toBe(server.mcp_url)
  })

  it('reads the servers file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-config-'))
    const file = join(dir, 'servers.json')
    writeFileSync(file, json({ servers: [{ ...server, tool_cache: 'user', timeout_seconds: 5, scope: 'a b' }] }))
    const config = load({ MCP_SERVERS_FILE: file })
    expect(config.servers.get('docs')).toMatchObject({ toolCache: 'user', timeoutMs: 5000, oauth: { scope: 'a b' } })
  })

  // Each bad configuration stops start-up with one line naming the variable or the entry.
  it.each([
    [{ PORT: 'eighty' }, /^PORT: /],
    [{ PUBLIC_BASE_URL: 'ftp://relay' }, /^PUBLIC_BASE_URL: must be an http\(s\) URL$/],
    [{ RELAY_API_KEYS: 'short' }, /^RELAY_API_KEYS: entry 1: the key must be at least 16 characters$/],
    [{ RELAY_API_KEYS: `bad name:${KEY}` }, /^RELAY_API_KEYS: entry 1: the name must be/],
    [{ RELAY_API_KEYS: `${KEY},${KEY}` }, /^RELAY_API_KEYS: entry 2: the same key is listed twice$/],
    [{ MCP_SERVERS_JSON: '{not json' }, /^MCP_SERVERS_JSON: not valid JSON/],
    [{ MCP_SERVERS_JSON: json({ servers: 'docs' }) }, /^MCP_SERVERS_JSON: expected \{"servers": \[\.\.\.\]\}/],
    [{ MCP_SERVERS_JSON: json([server, { server_id: 'x', mcp_url: 'notaurl' }]) }, /^MCP_SERVERS_JSON: servers\[1\] \(x\): mcp_url: must be an http\(s\) URL$/],
    [{ MCP_SERVERS_JSON: json([{ mcp_url: server.mcp_url }]) }, /^MCP_SERVERS_JSON: servers\[0\]: server_id: is required$/],
    [{ MCP_SERVERS_JSON: json([{ server_id: 'docs', mcp_url: 42 }]) }, /^MCP_SERVERS_JSON: servers\[0\] \(docs\): mcp_url: must be an http\(s\) URL$/],
    [{ MCP_SERVERS_JSON: json([{ server_id: 'a::b', mcp_url: server.mcp_url }]) }, /servers\[0\] \(a::b\): server_id: .*no "::"/],
    [{ MCP_SERVERS_JSON: json([server, server]) }, /^MCP_SERVERS_JSON: servers\[1\] \(docs\): server_id is used twice$/],
    [{ MCP_SERVERS_JSON: json([{ ...server, tool_cache: 'team' }]) }, /servers\[0\] \(docs\): tool_cache: /],
    [{ MCP_SERVERS_JSON: json([{ ...server, client_secret: 's3cret-value' }]) }, /servers\[0\] \(docs\): client_secret: client_secret is set without client_id$/],
    [{ MCP_SERVERS_JSON: json([{ ...server, authorization_url: 'https://sso.example.com/a' }]) }, /authorization_url and token_url must be set together/],
    [{ MCP_SERVERS_JSON: '[]', MCP_SERVERS_FILE: '/nowhere.json' }, /^MCP_SERVERS_JSON: set either MCP_SERVERS_FILE or MCP_SERVERS_JSON, not both$/],
    [{ MCP_SERVERS_FILE: '/nonexistent/servers.json' }, /^MCP_SERVERS_FILE: cannot read \/nonexistent\/servers\.json \(ENOENT\)$/],
    [{ STORE_URL: 'mysql://db' }, /^STORE_URL: must start with/],
    [{ STORE_URL: 'redis://:hunter2@redis:6379' }, /^RELAY_ENCRYPTION_KEY: required with a redis store/],
    [{ TOOL_LIST_CACHE_TTL_SECONDS: '-1' }, /^TOOL_LIST_CACHE_TTL_SECONDS: /],
    [{ UPSTREAM_TIMEOUT_SECONDS: '0' }, /^UPSTREAM_TIMEOUT_SECONDS: /],
    [{ OAUTH_TRUSTED_HOSTS: '10.0.0.0/99' }, /^OAUTH_TRUSTED_HOSTS: "10\.0\.0\.0\/99" is not a valid CIDR$/],
    [{ OAUTH_TRUSTED_HOSTS: 'user@host' }, /^OAUTH_TRUSTED_HOSTS: "user@host" is not a host/],
    [{ OAUTH_CLIENT_METADATA_URL: 'http://relay/cimd.json' }, /^OAUTH_CLIENT_METADATA_URL: must be an https URL$/],
    [{ RELAY_USER_SECRET: 'too-short' }, /^RELAY_USER_SECRET: must be at least 32 characters$/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: /],
  ])('refuses %o with one line naming it', (env, message) => {
    let thrown: unknown
    try {
      load(env as Record<string, string>)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(ConfigError)
    const text = (thrown as Error).message
    expect(text).toMatch(message)
    expect(text).not.toContain('\n')
    for (const secret of ['hunter2', 's3cret-value', KEY]) expect(text).not.toContain(secret)
  })

  it('parses trusted hosts as host, host:port and CIDR', () => {
    const config = load({ OAUTH_TRUSTED_HOSTS: 'localhost, 127.0.0.1:9000 ,10.0.0.0/8,[::1]' })
    expect(config.trustedHosts).toEqual([
      { kind: 'host', host: 'localhost', port: undefined },
      { kind: 'host', host: '127.0.0.1', port: '9000' },
      { kind: 'cidr', address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      { kind: 'host', host: '[::1]', port: undefined },
    ])
  })
})

describe('npm start with a bad configuration', () => {
  it('exits 1 with one line on stderr naming the variable', () => {
    const result = spawnSync(
      process.execPath,
      ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'src/main.ts'],
      { env: { PATH: process.env.PATH, MCP_SERVERS_JSON: '[{"server_id":"docs"}]', STORE_URL: 'memory://' }, encoding: 'utf8', timeout: 20_000 },
    )
    expect(result.status).toBe(1)
    expect(result.stdout).toBe('')
    expect(result.stderr.trim().split('\n')).toEqual([
      'mcp-auth-relay: configuration error: MCP_SERVERS_JSON: servers[0] (docs): mcp_url: is required',
    ])
  })
})
