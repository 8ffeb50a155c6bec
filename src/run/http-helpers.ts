import type http from 'node:http';

/**
 * What the HTTP side of espf run shares between its parts (the status API,
 * src/run/status-api.ts, and the web console, src/console/server.ts): a
 * refusal that carries its HTTP status, and a bounded body reader.
 */

/** A request refused with `status` and a one-line reason; each part renders it its own way (JSON, a page). */
export class HttpRefusal extends Error {
  readonly code = 'ESPF_HTTP_REFUSED';
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

/**
 * The whole body of a request, at most `maxBytes` (a declared or actual
 * larger body: HttpRefusal 413 with `tooLarge`, and the rest is not read).
 */
export function readBody(req: http.IncomingMessage, maxBytes: number, tooLarge: string): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.reject(new HttpRefusal(413, tooLarge));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.off('data', onData);
        reject(new HttpRefusal(413, tooLarge));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/**
 * After a refusal: an answer sent before the whole body was read closes the
 * connection (header to add), and the rest of the body is drained, not parsed.
 */
export function closeUnread(req: http.IncomingMessage): Record<string, string> {
  if (req.complete) return {};
  req.resume();
  return { connection: 'close' };
}
