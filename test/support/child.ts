import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnEspf } from './cli.ts';
import { eventually } from './receiver.ts';

/** `espf run` as a real child process (for kill -9, restarts and hot standby). */
export class EspfProcess {
  readonly child: ChildProcess;
  readonly logDir: string;
  output = '';
  private exitWaiters: ((code: number | null) => void)[] = [];
  exitCode: number | null | undefined = undefined;

  constructor(url: string, instance = 'main', env: Record<string, string> = {}, args: readonly string[] = [], nodeArgs: readonly string[] = []) {
    this.logDir = mkdtempSync(path.join(os.tmpdir(), 'espf-log-'));
    this.child = spawnEspf(['run', '--instance', instance, ...args], {
      env: { DATABASE_URL: url, ESPF_LOG_DIR: this.logDir, ESPF_HTTP_PORT: '0', ESPF_LOG_LEVEL: 'info', ...env },
      nodeArgs,
    });
    const collect = (b: Buffer) => { this.output += b.toString('utf8'); };
    this.child.stdout!.on('data', collect);
    this.child.stderr!.on('data', collect);
    this.child.on('exit', (code) => {
      this.exitCode = code;
      for (const w of this.exitWaiters.splice(0)) w(code);
    });
  }

  /** Resolves when the instance logs that it streams. */
  async streaming(timeoutMs = 20_000): Promise<void> {
    await eventually(async () => {
      if (this.exitCode !== undefined) throw new Error(`espf run exited (${this.exitCode}) before streaming:\n${this.output}`);
      return /streaming slot/.test(this.output);
    }, timeoutMs, 'espf run to stream').catch((err: Error) => {
      throw this.exitCode !== undefined ? err : new Error(`${err.message}:\n${this.output}`);
    });
  }

  /** The peak resident memory of the process so far, in MB (Linux: VmHWM). */
  peakRssMb(): number | null {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : null;
    } catch { return null; }
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }

  exited(): Promise<number | null> {
    if (this.exitCode !== undefined) return Promise.resolve(this.exitCode);
    return new Promise((resolve) => this.exitWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.kill('SIGTERM');
    await this.exited();
  }
}

/** One `espf <args>` command as a child process (test/support/cli.ts). */
export { espf as runEspf, type EspfRun as CliRun } from './cli.ts';
