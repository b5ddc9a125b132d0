import { createHash, randomBytes } from 'node:crypto'
import type { Keyv } from 'keyv'
import { storeKey } from '../store/keys.ts'
import type { SealedMap } from '../store/sealed-map.ts'
import type { TokenOwner } from '../store/tokens.ts'

/** A reusable sign-in link: `login_url = $PUBLIC_BASE_URL/oauth/start/<ticket>` (DESIGN.md §5). */
export interface LoginTicket extends TokenOwner {
  /** The scope to request, space separated; undefined lets discovery decide. */
  readonly scope: string | undefined
}

const TICKET_TTL_MS = 24 * 60 * 60 * 1000

export interface TicketStore {
  /** The live ticket for this owner and scope, or a new one: an agent that asks twice gets the same link. */
  issue(ticket: LoginTicket): Promise<string>
  /** The ticket, leaving it live: the confirmation page (GET) uses nothing up (DESIGN.md §6). */
  peek(id: string): Promise<LoginTicket | undefined>
  /** The ticket, once: it dies on use. */
  take(id: string): Promise<LoginTicket | undefined>
}

/**
 * Tickets are stored under the SHA-256 of their id, so a copy of the store does not hold live
 * sign-in links (DESIGN.md §6). The ticket carries no secret of its own: the flow's verifier is
 * made at /oauth/start. The owner's live ticket, which `issue` hands out again (DESIGN.md §5 step
 * 1), must be found from the owner, so that index holds the id itself: it is sealed (`links`, a
 * sealed view of the same namespace), bound to the owner's key like every sealed value.
 */
export function createTicketStore(deps: { keyv: Keyv; links: SealedMap<string> }): TicketStore {
  const { keyv, links } = deps
  return {
    async issue(ticket) {
      const ownerKey = ownerKeyOf(ticket)
      const known = await links.get(ownerKey)
      if (known && (await keyv.get(ticketKey(known)))) return known
      const id = randomBytes(32).toString('base64url')
      await keyv.set(ticketKey(id), { ...ticket }, TICKET_TTL_MS)
      await links.set(ownerKey, id, TICKET_TTL_MS)
      return id
    },
    async peek(id) {
      if (!isTicketId(id)) return undefined
      return (await keyv.get(ticketKey(id))) as LoginTicket | undefined
    },
    async take(id) {
      if (!isTicketId(id)) return undefined
      const key = ticketKey(id)
      const ticket = (await keyv.get(key)) as LoginTicket | undefined
      // Only the caller whose delete removed it may use it (two tabs, two replicas).
      if (!ticket || !(await keyv.delete(key))) return undefined
      // The owner's index names a used ticket no more (the next link is a new one), unless it
      // already names a newer one. Best effort: an index left behind names a ticket that is gone,
      // which issue() treats as no ticket, so a failure here must not fail the sign-in.
      const ownerKey = ownerKeyOf(ticket)
      try {
        if ((await links.get(ownerKey)) === id) await links.delete(ownerKey)
      } catch {
        // see above: harmless, and the ticket is already used up
      }
      return ticket
    },
  }
}

function ownerKeyOf(ticket: LoginTicket): string {
  return `owner:${storeKey(ticket.tenant, ticket.userId, ticket.serverId, ticket.scope ?? '')}`
}

function isTicketId(id: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(id)
}

function ticketKey(id: string): string {
  return `ticket:${createHash('sha256').update(id).digest('base64url')}`
}
