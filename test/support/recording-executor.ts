import type { Executor } from '../../src/executors/executor.ts';
import type { AuditEntry } from '../../src/sim/audit.ts';

/** A command the backup sent to the appliance, with what the audit log said when it began. */
export interface Sent {
  readonly command: string;
  readonly heldOpen: boolean;
  /** The appliance's audit entries (file order) when the command began and when it ended. */
  readonly auditBefore: readonly AuditEntry[];
  auditAfter: readonly AuditEntry[];
}

/**
 * Wraps an executor to record every command with the audit log around it, and lets a test act
 * at two moments that do not race the simulator: right after the stop returned (vpxd is gone,
 * nothing writes) and just before a snapshot dump begins.
 */
export function recordingExecutor(
  inner: Executor,
  audit: () => Promise<AuditEntry[]>,
  hooks: { afterStop?: () => Promise<void>; beforeSnapshotDump?: () => Promise<void> } = {},
): { executor: Executor; sent: Sent[] } {
  const sent: Sent[] = [];
  const executor: Executor = {
    kind: inner.kind,
    description: inner.description,
    async run(command, options) {
      if (/--snapshot=/.test(command)) await hooks.beforeSnapshotDump?.();
      const entry: Sent = { command, heldOpen: options?.stdin !== undefined, auditBefore: await audit(), auditAfter: [] };
      sent.push(entry);
      const result = await inner.run(command, options);
      entry.auditAfter = await audit();
      if (/--stop vmware-vpxd|vmware-inventoryservice stop/.test(command)) await hooks.afterStop?.();
      return result;
    },
    close: () => inner.close(),
  };
  return { executor, sent };
}

/** The last state the audit entries give a service. */
export function lastState(entries: readonly AuditEntry[], service: string): string | undefined {
  return entries.filter((e) => e.service === service).at(-1)?.state;
}
