// The servers file's parts for MCP's authorization extensions (DESIGN.md §3): the top-level
// identity_provider, grant kinds enterprise and workload_identity, and each server's dpop.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/load-config.ts'

const KEY = 'k'.repeat(24)
const provider = { issuer: 'https://login.example.com', client_id: 'mcp-relay' }
const crm = { server_id: 'crm', mcp_url: 'https://crm.example.com/mcp', grant_type: 'enterprise', client_id: 'relay-at-crm', client_secret: 's3cret-value' }
const directory = mkdtempSync(join(tmpdir(), 'relay-config-'))
const tokenFile = join(directory, 'token')
writeFileSync(tokenFile, 'eyJ.e30.sig\n')
const reports = { server_id: 'reports', mcp_url: 'https://reports.example.com/mcp', grant_type: 'workload_identity', assertion_file: tokenFile }

function load(document: unknown) {
  return loadConfig({ RELAY_API_KEYS: KEY, MCP_SERVERS_JSON: JSON.stringify(document) })
}

function problemOf(document: unknown): string {
  try {
    load(document)
  } catch (error) {
    if (error instanceof ConfigError) return error.message
    throw error
  }
  throw new Error('the document was accepted')
}

describe('the servers file for enterprise and workload identity', () => {
  it('reads identity_provider (openid always asked for) and enterprise and workload entries, dpop auto by default', () => {
    const config = load({
      identity_provider: { ...provider, client_secret: 'idp-secret', scope: 'email offline_access', token_endpoint: 'https://login.example.com/oauth2/token' },
      servers: [crm, reports, { server_id: 'plain', mcp_url: 'https://plain.example.com/mcp', dpop: 'off' }],
    })
    expect(config.identityProvider).toEqual({
      issuer: 'https://login.example.com',
      clientId: 'mcp-relay',
      clientSecret: 'idp-secret',
      tokenEndpoint: 'https://login.example.com/oauth2/token',
      scope: 'openid email offline_access',
    })
    expect(config.servers.get('crm')).toMatchObject({ grantType: 'enterprise', dpop: 'auto', oauth: { clientId: 'relay-at-crm', clientSecret: 's3cret-value' } })
    expect(config.servers.get('reports')).toMatchObject({ grantType: 'workload_identity', assertionFile: tokenFile, dpop: 'auto', oauth: { tokenEndpointAuthMethod: 'none' } })
    expect(config.servers.get('plain')?.dpop).toBe('off')
    expect(load({ servers: [reports] }).identityProvider).toBeUndefined()
    expect(load({ identity_provider: provider, servers: [crm] }).identityProvider?.scope).toBe('openid')
  })

  it.each([
    ['an enterprise server without identity_provider', { servers: [crm] }, 'servers[0] (crm): grant_type: "enterprise" needs a top-level identity_provider'],
    ['an enterprise server without client_id', { identity_provider: provider, servers: [{ ...crm, client_id: undefined, client_secret: undefined }] }, 'servers[0] (crm): client_id: is required with grant_type "enterprise"'],
    ['identity_provider without issuer', { identity_provider: { client_id: 'x' }, servers: [crm] }, 'identity_provider: issuer: is required'],
    ['identity_provider with an issuer that is no URL', { identity_provider: { ...provider, issuer: 'login.example.com' }, servers: [crm] }, 'identity_provider: issuer: must be an http(s) URL'],
    ['identity_provider without client_id', { identity_provider: { issuer: provider.issuer }, servers: [crm] }, 'identity_provider: client_id: is required'],
    ['identity_provider that is not an object', { identity_provider: 'https://login.example.com', servers: [crm] }, 'identity_provider: must be an object with issuer and client_id'],
    ['a workload without assertion_file', { servers: [{ ...reports, assertion_file: undefined }] }, 'servers[0] (reports): assertion_file: is required with grant_type "workload_identity"'],
    ['a workload with a client secret', { servers: [{ ...reports, client_id: 'w', client_secret: 'x' }] }, 'servers[0] (reports): client_secret: is not used with grant_type "workload_identity"'],
    ['a workload with a secret-based auth method', { servers: [{ ...reports, token_endpoint_auth_method: 'client_secret_basic' }] }, 'servers[0] (reports): token_endpoint_auth_method: must be "none"'],
    ['assertion_file on a user sign-in server', { servers: [{ server_id: 'docs', mcp_url: 'https://docs.example.com/mcp', assertion_file: tokenFile }] }, 'servers[0] (docs): assertion_file: is only used with grant_type "workload_identity"'],
    ['an unknown dpop mode', { servers: [{ server_id: 'docs', mcp_url: 'https://docs.example.com/mcp', dpop: 'yes' }] }, 'servers[0] (docs): dpop:'],
    ['an unknown grant kind', { servers: [{ server_id: 'docs', mcp_url: 'https://docs.example.com/mcp', grant_type: 'password' }] }, 'servers[0] (docs): grant_type:'],
  ])('refuses %s in one line naming it, without a secret', (_case, document, problem) => {
    const message = problemOf(document)
    expect(message).toContain(`MCP_SERVERS_JSON: ${problem}`)
    expect(message).not.toContain('s3cret-value')
  })

  it('takes token_url alone for the extension grants (they have no authorization endpoint)', () => {
    const config = load({ identity_provider: provider, servers: [{ ...crm, token_url: 'https://crm.example.com/oauth/token' }, { ...reports, token_url: 'https://reports.example.com/token' }] })
    expect(config.servers.get('crm')?.oauth.tokenUrl).toBe('https://crm.example.com/oauth/token')
    expect(config.servers.get('reports')?.oauth.tokenUrl).toBe('https://reports.example.com/token')
  })

  it('warns about an assertion file it cannot read yet, and about unknown identity_provider fields, and starts', () => {
    const config = load({ identity_provider: { ...provider, clientid: 'typo' }, servers: [crm, { ...reports, assertion_file: join(directory, 'not-yet') }] })
    expect(config.serversWarnings).toEqual([
      'MCP_SERVERS_JSON: identity_provider: unknown field "clientid" ignored',
      `MCP_SERVERS_JSON: servers[1] (reports): assertion_file ${join(directory, 'not-yet')} cannot be read yet`,
    ])
  })
})
