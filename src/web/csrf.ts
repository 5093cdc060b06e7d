import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/**
 * CSRF protection for the page's actions. Browsers resend basic auth on their own, so a
 * logged-in operator's browser could be made to post from another site; an action therefore
 * needs all of: a JSON body (a cross-site form cannot send one without a CORS preflight, which
 * this server never grants), the page's token in `x-csrf-token` (another origin cannot read the
 * page to learn it), and, when the browser says where the request comes from (Origin,
 * Sec-Fetch-Site), this same origin. The token is an HMAC of a per-process secret: a restart
 * invalidates open pages, which then reload.
 */
export class CsrfGuard {
  readonly #secret = randomBytes(32);

  token(): string {
    return createHmac('sha256', this.#secret).update('vcsa-backup dashboard actions v1').digest('base64url');
  }

  /** null when the request may act; else why not (for the 403's body). */
  check(req: IncomingMessage): string | null {
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json') return 'actions take a JSON body (content-type: application/json)';
    const given = req.headers['x-csrf-token'];
    const expected = Buffer.from(this.token());
    if (typeof given !== 'string' || given.length !== expected.length || !timingSafeEqual(Buffer.from(given), expected)) {
      return 'missing or wrong x-csrf-token: reload the page';
    }
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') return `cross-site request refused (sec-fetch-site: ${site})`;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host: string;
      try {
        host = new URL(origin).host;
      } catch {
        return 'bad Origin header';
      }
      if (host !== req.headers.host) return `cross-origin request refused (Origin ${origin})`;
    } else if (origin === 'null') {
      return 'opaque origin refused';
    }
    return null;
  }
}
