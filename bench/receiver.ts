/**
 * The benchmark's HTTP receiver: a separate process that answers 200 at once to
 * every POST and records, for each request, its arrival time and the event's
 * i_event (body `{event_type, variables: {i_event, ...}}`).
 *
 *   node --import tsx bench/receiver.ts [--port N]
 *
 * Prints `port=<N>` on stdout when it listens on 127.0.0.1. Control endpoints
 * (GET only, so that every POST is an event):
 *   GET /stats                 counts, per-second histogram of arrivals, first/last arrival
 *   GET /arrivals?from=<k>     arrivals k.. as binary little-endian float64 pairs
 *                              [i_event, arrival_ms, i_event, arrival_ms, ...]
 *   GET /reset                 forget everything recorded
 *   GET /down?status=<code>    answer every POST with this status (503 by default) and count
 *                              it in `downRequests`, instead of recording it: a receiver that
 *                              is down, as an operator meets it (the outage figure)
 *   GET /up                    answer 200 again
 * Times are epoch milliseconds with sub-millisecond resolution
 * (performance.timeOrigin + performance.now()), the same clock as Date.now()
 * in every process of the machine.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const portArg = process.argv.indexOf('--port');
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : Number(process.env.RECEIVER_PORT ?? 0);

const now = (): number => performance.timeOrigin + performance.now();

let requests = 0;        // every POST answered
let badBodies = 0;       // POSTs whose body had no numeric variables.i_event
let duplicates = 0;      // POSTs of an i_event already seen (retries)
let firstAt = 0;
let lastAt = 0;
let downStatus = 0;      // while not 0: every POST is answered with it, counted, not recorded
let downRequests = 0;    // POSTs answered with downStatus
const perSecond = new Map<number, number>();  // epoch second -> POSTs arrived in it
const seen = new Set<number>();
// Arrivals of first deliveries, as growable float64 pairs (i_event, ms).
let arrivals = new Float64Array(1 << 16);
let nArrivals = 0;

function record(iEvent: number, at: number): void {
  if (seen.has(iEvent)) { duplicates++; return; }
  seen.add(iEvent);
  if ((nArrivals + 1) * 2 > arrivals.length) {
    const bigger = new Float64Array(arrivals.length * 2);
    bigger.set(arrivals);
    arrivals = bigger;
  }
  arrivals[nArrivals * 2] = iEvent;
  arrivals[nArrivals * 2 + 1] = at;
  nArrivals++;
}

function reset(): void {
  requests = 0; badBodies = 0; duplicates = 0; firstAt = 0; lastAt = 0; downStatus = 0; downRequests = 0;
  perSecond.clear(); seen.clear();
  arrivals = new Float64Array(1 << 16); nArrivals = 0;
}

const OK_BODY = Buffer.from('{"ok":true}');

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && downStatus !== 0) {
    req.resume();
    req.on('end', () => {
      downRequests++;
      res.writeHead(downStatus, { 'Content-Type': 'application/json', 'Content-Length': 2 });
      res.end('{}');
    });
    return;
  }
  if (req.method === 'POST') {
    const at = now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests++;
      if (firstAt === 0) firstAt = at;
      lastAt = at;
      const sec = Math.floor(at / 1000);
      perSecond.set(sec, (perSecond.get(sec) ?? 0) + 1);
      let iEvent: unknown;
      try {
        const body = JSON.parse(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')) as { variables?: { i_event?: unknown } };
        iEvent = body.variables?.i_event;
      } catch { /* counted below */ }
      if (typeof iEvent === 'number') record(iEvent, at);
      else badBodies++;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': OK_BODY.length });
      res.end(OK_BODY);
    });
    return;
  }
  const url = new URL(req.url ?? '/', 'http://x');
  if (req.method === 'GET' && url.pathname === '/stats') {
    const hist = [...perSecond.entries()].sort((a, b) => a[0] - b[0]).map(([second, count]) => ({ second, count }));
    const body = JSON.stringify({ requests, unique: nArrivals, duplicates, badBodies, firstAt, lastAt, downRequests, perSecond: hist });
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(body);
    return;
  }
  if (req.method === 'GET' && url.pathname === '/arrivals') {
    const from = Math.max(0, Math.min(nArrivals, Number(url.searchParams.get('from') ?? 0) || 0));
    const slice = arrivals.subarray(from * 2, nArrivals * 2);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': slice.byteLength });
    res.end(Buffer.from(slice.buffer, slice.byteOffset, slice.byteLength));
    return;
  }
  if (req.method === 'GET' && (url.pathname === '/down' || url.pathname === '/up')) {
    downStatus = url.pathname === '/down' ? Number(url.searchParams.get('status') ?? 503) || 503 : 0;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ downStatus, downRequests }));
    return;
  }
  if (req.method === 'GET' && url.pathname === '/reset') {
    reset();
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"reset":true}');
    return;
  }
  res.writeHead(404);
  res.end();
});
server.keepAliveTimeout = 60_000;
server.headersTimeout = 65_000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;

server.listen(port, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`port=${typeof a === 'object' && a ? a.port : port}\n`);
});

const stop = (): void => { server.close(); server.closeAllConnections(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Exit with the parent: it holds our stdin open.
process.stdin.on('end', stop);
process.stdin.resume();
