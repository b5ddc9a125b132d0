import { spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/load-config.ts'

const KEY = 'k'.repeat(24)
const EC_PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
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
      filesMaxBytesPerTenant: 256 * 1024 * 1024,
      pool: { maxSessions: 1000, idleMs: 300_000 },
      clientMetadataUrl: undefined,
      logLevel: 'info',
    })
    expect(config.apiKeys).toEqual([{ tenant: 'default', key: KEY }])
    expect(config.servers.get('docs')).toMatchObject({ serverId: 'docs', description: '', toolCache: 'server' })
    expect(Object.isFrozen(config)).toBe(true)
  })

  it('takes TOOLS_BASE_URL for /openapi.json (default PUBLIC_BASE_URL, no trailing slash), an http(s) URL or a line naming it', () => {
    expect(load({ PUBLIC_BASE_URL: 'https://relay.example.com/' }).toolsBaseUrl).toBe('https://relay.example.com')
    expect(load({ PUBLIC_BASE_URL: 'https://relay.example.com', TOOLS_BASE_URL: 'http://mcp-auth-relay:8787/' })).toMatchObject({
      publicBaseUrl: 'https://relay.example.com',
      toolsBaseUrl: 'http://mcp-auth-relay:8787',
      callbackUrl: 'https://relay.example.com/oauth/callback',
    })
    expect(() => load({ TOOLS_BASE_URL: 'ftp://relay' })).toThrow(new ConfigError('TOOLS_BASE_URL: must be an http(s) URL'))
  })

  // What Dify's Custom Tool import refuses as a server URL (its SSRF protection): one warning line.
  it.each([
    [{}, /^TOOLS_BASE_URL \(not set, so PUBLIC_BASE_URL\) is http:\/\/localhost:8787, which Dify's Custom Tool import refuses \(its host is localhost\): .*e\.g\. http:\/\/mcp-auth-relay:8787 on Dify's Docker network/],
    [{ TOOLS_BASE_URL: 'http://relay.local:8787' }, /^TOOLS_BASE_URL is http:\/\/relay\.local:8787, which .* \(its host is a \.local name\)/],
    [{ TOOLS_BASE_URL: 'http://127.0.0.1:8787' }, /\(127\.0\.0\.1 is a private, loopback or link-local address\)/],
    [{ TOOLS_BASE_URL: 'http://10.1.2.3' }, /\(10\.1\.2\.3 is a private/],
    [{ TOOLS_BASE_URL: 'http://172.20.0.5:8787' }, /\(172\.20\.0\.5 is a private/],
    [{ TOOLS_BASE_URL: 'http://192.168.1.10' }, /\(192\.168\.1\.10 is a private/],
    [{ TOOLS_BASE_URL: 'http://169.254.169.254' }, /\(169\.254\.169\.254 is a private/],
    [{ TOOLS_BASE_URL: 'http://[::1]:8787' }, /\(::1 is a private/],
    [{ TOOLS_BASE_URL: 'http://[fd00::5]:8787' }, /\(fd00::5 is a private/],
    [{ TOOLS_BASE_URL: 'http://[fe80::1]' }, /\(fe80::1 is a private/],
    [{ TOOLS_BASE_URL: 'http://[::ffff:192.168.0.1]' }, /is a private, loopback or link-local address/],
    [{ PUBLIC_BASE_URL: 'http://192.168.1.10:8787' }, /^TOOLS_BASE_URL \(not set, so PUBLIC_BASE_URL\) is http:\/\/192\.168\.1\.10:8787/],
  ])('warns when Dify would refuse the tools URL: %o', (env, warning) => {
    expect(load(env).toolsBaseUrlWarning).toMatch(warning)
  })

  it.each([
    [{ TOOLS_BASE_URL: 'http://mcp-auth-relay:8787' }],
    [{ TOOLS_BASE_URL: 'https://relay.example.com' }],
    [{ TOOLS_BASE_URL: 'http://203.0.114.7' }],
    [{ TOOLS_BASE_URL: 'http://[2606:4700::1]' }],
    [{ PUBLIC_BASE_URL: 'https://relay.example.com' }],
    [{ PUBLIC_BASE_URL: 'http://localhost:8787', TOOLS_BASE_URL: 'http://mcp-auth-relay:8787' }],
  ])('does not warn for a URL Dify takes: %o', (env) => {
    expect(load(env).toolsBaseUrlWarning).toBeUndefined()
  })

  it('reads TOOL_RESULT_INLINE_BYTES as a byte count from 0 to 16 MiB, naming the variable otherwise', () => {
    expect(load({ TOOL_RESULT_INLINE_BYTES: '0' }).toolResultInlineBytes).toBe(0)
    expect(load({ TOOL_RESULT_INLINE_BYTES: '65536' }).toolResultInlineBytes).toBe(65536)
    for (const bad of ['-1', '1.5', 'lots', String(16 * 1024 * 1024 + 1)]) {
      expect(() => load({ TOOL_RESULT_INLINE_BYTES: bad }), bad).toThrow(/^TOOL_RESULT_INLINE_BYTES: /)
    }
  })

  it('reads FILES_MAX_MB_PER_TENANT as MiB from 1 to 1 TiB, naming the variable in one line otherwise', () => {
    expect(load({ FILES_MAX_MB_PER_TENANT: '1' }).filesMaxBytesPerTenant).toBe(1024 * 1024)
    expect(load({ FILES_MAX_MB_PER_TENANT: ' 1024 ' }).filesMaxBytesPerTenant).toBe(1024 ** 3)
    for (const bad of ['0', '-5', '2.5', '256MB', String(1024 * 1024 + 1)]) {
      expect(() => load({ FILES_MAX_MB_PER_TENANT: bad }), bad).toThrow(/^FILES_MAX_MB_PER_TENANT: [^\n]+$/)
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
    [{ OAUTH_TRUSTED_HOSTS: 'fd00::/129' }, /^OAUTH_TRUSTED_HOSTS: "fd00::\/129" is not a valid CIDR$/],
    [{ OAUTH_TRUSTED_HOSTS: '[::1' }, /^OAUTH_TRUSTED_HOSTS: "\[::1" is not a host/],
    [{ OAUTH_TRUSTED_HOSTS: '::1:99999:x' }, /^OAUTH_TRUSTED_HOSTS: "::1:99999:x" is not a host/],
    [{ HOST: 'not a host' }, /^HOST: must be a host name or an IP address$/],
    [{ HOST: '[::1' }, /^HOST: must be a host name or an IP address$/],
    [{ OAUTH_CLIENT_METADATA_URL: 'http://relay/cimd.json' }, /^OAUTH_CLIENT_METADATA_URL: must be an https URL$/],
    [{ RELAY_USER_SECRET: 'too-short' }, /^RELAY_USER_SECRET: must be at least 32 characters$/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: /],
    [{ MCP_SERVERS_JSON: json([{ ...server, grant_type: 'password' }]) }, /servers\[0\] \(docs\): grant_type: /],
    [{ MCP_SERVERS_JSON: json([{ ...server, grant_type: 'client_credentials' }]) }, /servers\[0\] \(docs\): client_id: is required with grant_type "client_credentials"$/],
    [{ MCP_SERVERS_JSON: json([{ ...server, grant_type: 'client_credentials', client_id: 'svc' }]) }, /\(docs\): client_secret: grant_type "client_credentials" needs client_secret or client_private_key\(_file\)$/],
    [{ MCP_SERVERS_JSON: json([{ ...server, grant_type: 'client_credentials', client_id: 'svc', client_private_key: 's3cret-value' }]) }, /\(docs\): client_private_key: is not a PEM private key$/],
    [{ MCP_SERVERS_JSON: json([{ ...server, grant_type: 'client_credentials', client_id: 'svc', client_private_key_file: '/nonexistent/key.pem' }]) }, /\(docs\): client_private_key_file: cannot read \/nonexistent\/key\.pem \(ENOENT\)$/],
    [{ MCP_SERVERS_JSON: json([{ ...server, grant_type: 'client_credentials', client_id: 'svc', client_private_key: EC_PEM, client_signing_alg: 'RS256' }]) }, /\(docs\): client_private_key: a ec key cannot sign with RS256$/],
    [{ MCP_SERVERS_JSON: json([{ ...server, grant_type: 'client_credentials', client_id: 'svc', client_secret: 's3cret-value', token_endpoint_auth_method: 'private_key_jwt' }]) }, /\(docs\): token_endpoint_auth_method: must be "client_secret_basic" or "client_secret_post" with client_secret$/],
    [{ MCP_SERVERS_JSON: json([{ ...server, client_id: 'svc', client_private_key: EC_PEM }]) }, /\(docs\): grant_type: a private key \(private_key_jwt\) is only used with grant_type "client_credentials" or "enterprise"$/],
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
    for (const secret of ['hunter2', 's3cret-value', KEY, EC_PEM.split('\n')[1]!]) expect(text).not.toContain(secret)
  })

  it('reads a service account entry: the grant, its key (signing alg from the key) and private_key_jwt', () => {
    const config = load({
      MCP_SERVERS_JSON: json([
        { ...server, grant_type: 'client_credentials', client_id: 'svc', client_private_key: EC_PEM },
        { server_id: 'reports', mcp_url: 'https://reports.example.com/mcp', grant_type: 'client_credentials', client_id: 'svc', client_secret: 'x', token_url: 'https://sso.example.com/token' },
      ]),
    })
    expect(config.servers.get('docs')).toMatchObject({ grantType: 'client_credentials', oauth: { clientId: 'svc', tokenEndpointAuthMethod: 'private_key_jwt', clientKey: { alg: 'ES256' } } })
    expect(config.servers.get('reports')).toMatchObject({ grantType: 'client_credentials', oauth: { tokenUrl: 'https://sso.example.com/token', clientKey: undefined } })
    expect(load({ MCP_SERVERS_JSON: json([server]) }).servers.get('docs')?.grantType).toBe('authorization_code')
  })

  it('names each unknown field of a server entry in a warning, and starts', () => {
    const config = load({ MCP_SERVERS_JSON: json([{ ...server, grant_typ: 'client_credentials', scopes: 'a' }, { id: 'b', url: server.mcp_url }]) })
    expect(config.servers.get('docs')?.grantType).toBe('authorization_code')
    expect(config.serversWarnings).toEqual(['MCP_SERVERS_JSON: servers[0] (docs): unknown fields "grant_typ", "scopes" ignored'])
  })

  it('parses trusted hosts as host, host:port and CIDR', () => {
    const config = load({ OAUTH_TRUSTED_HOSTS: 'localhost, 127.0.0.1:9000 ,10.0.0.0/8,[::1]' })
    expect(config.trustedHosts).toEqual([
      { kind: 'host', host: 'localhost', port: undefined },
      { kind: 'host', host: '127.0.0.1', port: '9000' },
      { kind: 'cidr', address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      { kind: 'host', host: '::1', port: undefined },
    ])
  })

  // DESIGN.md §3: "Host names, IPv4 and IPv6 literals (`::1`, `[::1]:8080`, `fd00::/8`) are
  // accepted wherever a host is configured." IPv6 hosts are kept without brackets, as the guard
  // compares them (test/oauth/connect-guard.test.ts connects through each form).
  it.each([
    ['::1', { kind: 'host', host: '::1', port: undefined }],
    ['[::1]', { kind: 'host', host: '::1', port: undefined }],
    ['[::1]:8443', { kind: 'host', host: '::1', port: '8443' }],
    ['fd00::/8', { kind: 'cidr', address: 'fd00::', prefix: 8, family: 'ipv6' }],
    ['[fd00::]/8', { kind: 'cidr', address: 'fd00::', prefix: 8, family: 'ipv6' }],
    ['2001:db8::1', { kind: 'host', host: '2001:db8::1', port: undefined }],
    ['[2001:0DB8:0::0001]:80', { kind: 'host', host: '2001:db8::1', port: '80' }],
    ['::ffff:127.0.0.1', { kind: 'host', host: '::ffff:7f00:1', port: undefined }],
  ])('takes the IPv6 trusted host %s', (entry, parsed) => {
    expect(load({ OAUTH_TRUSTED_HOSTS: entry }).trustedHosts).toEqual([parsed])
  })

  it('takes OAUTH_TRUSTED_HOSTS=localhost,::1 (issue 12)', () => {
    expect(load({ OAUTH_TRUSTED_HOSTS: 'localhost,::1' }).trustedHosts).toEqual([
      { kind: 'host', host: 'localhost', port: undefined },
      { kind: 'host', host: '::1', port: undefined },
    ])
  })

  it.each([
    ['::', '::'],
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['[::]', '::'],
    ['0.0.0.0', '0.0.0.0'],
    ['relay.internal', 'relay.internal'],
  ])('listens on HOST=%s as %s', (host, listen) => {
    expect(load({ HOST: host }).host).toBe(listen)
  })

  it.each([
    ['http://[::1]:8787', 'http://[::1]:8787/oauth/callback'],
    ['https://[2001:db8::1]/relay/', 'https://[2001:db8::1]/relay/oauth/callback'],
  ])('takes PUBLIC_BASE_URL=%s with an IPv6 literal', (base, callback) => {
    expect(load({ PUBLIC_BASE_URL: base }).callbackUrl).toBe(callback)
  })

  it('takes an mcp_url at an IPv6 literal', () => {
    const config = load({ MCP_SERVERS_JSON: json([{ server_id: 'v6', mcp_url: 'http://[::1]:9000/mcp' }]) })
    expect(config.servers.get('v6')).toMatchObject({ mcpUrl: 'http://[::1]:9000/mcp' })
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
