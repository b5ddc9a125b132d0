// A self-signed certificate for https peers, trusted by a relay process through
// NODE_EXTRA_CA_CERTS=SELF_SIGNED_CERT_PATH. Made once (EC P-256, valid until 2126) with:
//   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500 \
//     -keyout self-signed-key.pem -out self-signed-cert.pem -subj "/CN=relay test peer" \
//     -addext "subjectAltName=DNS:upstream.example,IP:203.0.113.7,IP:2001:db8::7,IP:127.0.0.1,IP:::1"
// It names made-up hosts (RFC 2606, RFC 5737, RFC 3849) that a proxy under test maps to a
// loopback peer, and the loopback addresses themselves.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const SELF_SIGNED_CERT_PATH = fileURLToPath(new URL('./self-signed-cert.pem', import.meta.url))

export const SELF_SIGNED = {
  cert: readFileSync(SELF_SIGNED_CERT_PATH, 'utf8'),
  key: readFileSync(fileURLToPath(new URL('./self-signed-key.pem', import.meta.url)), 'utf8'),
}

/** The public names and addresses the certificate holds besides loopback. */
export const CERTIFIED = { name: 'upstream.example', ipv4: '203.0.113.7', ipv6: '2001:db8::7' } as const
