/**
 * A task run every `ms`, never two runs at once (a slow database does not
 * pile them up). A failed run goes to `failed`; the next one runs on time.
 */
export class Poller {
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(private readonly task: () => Promise<void>, private readonly failed: (err: unknown) => void) {}

  start(ms: number): void {
    this.timer = setInterval(() => void this.run(), ms);
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await this.task();
    } catch (err) {
      this.failed(err);
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
