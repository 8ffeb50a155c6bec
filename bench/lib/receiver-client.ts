import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { BENCH_DIR } from './paths.ts';

export interface ReceiverStats {
  readonly requests: number;
  readonly unique: number;
  readonly duplicates: number;
  readonly badBodies: number;
  readonly firstAt: number;
  readonly lastAt: number;
  /** POSTs answered while down (GET /down), not recorded as arrivals. */
  readonly downRequests: number;
  readonly perSecond: readonly { second: number; count: number }[];
}

export interface Arrivals {
  readonly iEvent: Float64Array;
  readonly at: Float64Array;
}

/** The receiver process (bench/receiver.ts), driven over its GET control endpoints. */
export class Receiver {
  private constructor(readonly child: ChildProcess, readonly port: number) {}

  get url(): string { return `http://127.0.0.1:${this.port}/`; }

  static async start(port = 0): Promise<Receiver> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'receiver.ts'), '--port', String(port)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout! });
    const got = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('receiver did not print its port within 20 s')), 20_000);
      child.once('exit', (code) => { clearTimeout(t); reject(new Error(`receiver exited (${code}) before listening`)); });
      lines.on('line', (line) => {
        const m = /^port=(\d+)$/.exec(line.trim());
        if (m) { clearTimeout(t); resolve(Number(m[1])); }
      });
    });
    return new Receiver(child, got);
  }

  private async get(p: string): Promise<Buffer> {
    const r = await request(`http://127.0.0.1:${this.port}${p}`, { method: 'GET' });
    const body = Buffer.from(await r.body.arrayBuffer());
    if (r.statusCode !== 200) throw new Error(`receiver GET ${p}: ${r.statusCode}`);
    return body;
  }

  async stats(): Promise<ReceiverStats> {
    return JSON.parse((await this.get('/stats')).toString('utf8')) as ReceiverStats;
  }

  async reset(): Promise<void> { await this.get('/reset'); }

  /** Answer every POST with `status` (counted in stats().downRequests) until up(). */
  async down(status = 503): Promise<void> { await this.get(`/down?status=${status}`); }

  async up(): Promise<void> { await this.get('/up'); }

  async arrivals(from = 0): Promise<Arrivals> {
    const buf = await this.get(`/arrivals?from=${from}`);
    const pairs = new Float64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    const n = pairs.length / 2;
    const iEvent = new Float64Array(n);
    const at = new Float64Array(n);
    for (let i = 0; i < n; i++) { iEvent[i] = pairs[2 * i]!; at[i] = pairs[2 * i + 1]!; }
    return { iEvent, at };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    await exited;
  }
}
