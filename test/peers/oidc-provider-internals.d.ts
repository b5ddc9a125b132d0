// oidc-provider's own grant helpers (lib/helpers/grants.js), which its built-in grants use and
// custom grants cannot reach through the package's API: the peer's extension grants use them so
// that DPoP proofs, nonces and resource indicators are checked by oidc-provider itself, not by
// a reading of ours. Only the members used are declared.
declare module 'oidc-provider/lib/helpers/grants.js' {
  import type Provider from 'oidc-provider'
  import type { KoaContextWithOIDC } from 'oidc-provider'

  export function validateDpop(provider: Provider, ctx: KoaContextWithOIDC): Promise<{ thumbprint: string; jti: string; iat: number } | undefined>
  export function checkDpopReplay(provider: Provider, ctx: KoaContextWithOIDC, dPoP: { jti: string } | undefined, clientId: string): Promise<void>
  export function resolveRequestedResources(provider: Provider, ctx: KoaContextWithOIDC): Promise<Array<{ audience: string; scope: string; scopes: Set<string> }>>
  export function buildTokenResponse(provider: Provider, response: Record<string, unknown>): Record<string, unknown>
}
