/** SSH sessions open at once on one connection (servers cap them, OpenSSH at 10): a counting semaphore, the rest wait in order. Not the fleet slot (src/locks/fleet-lease.ts). */
export class SessionLimit {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.#free = Math.max(1, limit);
  }

  /** Resolves with the function that gives the slot back (call it exactly once). */
  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = (): void => {
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          const next = this.#waiting.shift();
          if (next) next();
          else this.#free++;
        });
      };
      if (this.#free > 0) {
        this.#free--;
        grant();
      } else {
        this.#waiting.push(grant);
      }
    });
  }
}
