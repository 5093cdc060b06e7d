import { formatBytes } from '../format.ts';

/** A backup's ProgressEvent, or any other job's steps (restore, verify). */
export interface ProgressLine {
  readonly target: string;
  readonly step: string;
  readonly artifact?: string;
  readonly bytes?: number;
  readonly totalBytes?: number;
}

/**
 * Progress for humans on stderr: one live line per target on a terminal, plain lines (one per
 * step change) otherwise, so logs and CI output stay readable.
 */
export class ProgressPrinter {
  readonly #tty: boolean;
  readonly #write: (text: string) => void;
  readonly #lines = new Map<string, string>();
  readonly #lastStep = new Map<string, string>();
  readonly #rate = new Map<string, { at: number; bytes: number; rate: number }>();
  #drawn = 0;

  constructor(tty: boolean, write: (text: string) => void) {
    this.#tty = tty;
    this.#write = write;
  }

  update(event: ProgressLine): void {
    const key = `${event.step}${event.artifact ? ` ${event.artifact}` : ''}`;
    let detail = '';
    if (event.bytes !== undefined) {
      const now = Date.now();
      const prev = this.#rate.get(event.target);
      let rate = prev?.rate ?? 0;
      if (prev && now - prev.at >= 500 && event.bytes >= prev.bytes) rate = ((event.bytes - prev.bytes) * 1000) / (now - prev.at);
      if (!prev || now - prev.at >= 500 || event.bytes < prev.bytes) this.#rate.set(event.target, { at: now, bytes: event.bytes, rate });
      detail = ` ${formatBytes(event.bytes)}${event.totalBytes ? ` of ${formatBytes(event.totalBytes)}` : ''}${rate > 0 ? ` (${formatBytes(rate)}/s)` : ''}`;
    }
    if (this.#tty) {
      this.#lines.set(event.target, `${event.target.padEnd(16)} ${key}${detail}`);
      this.#redraw();
    } else if (this.#lastStep.get(event.target) !== key) {
      this.#lastStep.set(event.target, key);
      this.#write(`${event.target}: ${key}\n`);
    }
  }

  /** A line that stays (a result, a failure). */
  note(text: string): void {
    if (this.#tty) this.#clear();
    this.#write(`${text}\n`);
    if (this.#tty) this.#redraw();
  }

  done(): void {
    if (this.#tty) this.#clear();
    this.#lines.clear();
  }

  #clear(): void {
    if (this.#drawn > 0) this.#write(`\x1b[${this.#drawn}A\x1b[J`);
    this.#drawn = 0;
  }

  #redraw(): void {
    this.#clear();
    const lines = [...this.#lines.values()];
    if (lines.length > 0) this.#write(`${lines.join('\n')}\n`);
    this.#drawn = lines.length;
  }
}
