import { BackupError, combineErrors, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import { maintenanceDatabase, quoteIdent, quoteLiteral as literal, type AppliancePostgres } from './appliance-postgres.ts';

/** One database to replace: `incoming` takes the name `database`, which is kept as `keepAs`. */
export interface SwapPair {
  readonly server: AppliancePostgres;
  readonly database: string;
  readonly incoming: string;
  readonly keepAs: string;
}

/** Swaps the names back (the undo of a swap). */
export type UndoSwap = () => Promise<void>;

/** Tries of the rename transaction when a session slipped in between (a superuser ignores the connection limit). */
const renameAttempts = 3;

/**
 * Swaps database names with the services stopped. ALTER DATABASE … RENAME is transactional in
 * PostgreSQL (unlike CREATE/DROP DATABASE), so every rename of one server happens in ONE
 * transaction: there is no moment without a database of the expected name, and a failure leaves
 * every name as it was. For each server:
 *   1. `CONNECTION LIMIT 0` on the databases being replaced: vCenter's own user (not a superuser)
 *      can no longer reconnect in between (undone in `finally` if the swap fails);
 *   2. BEGIN; end the sessions still on them (pg_terminate_backend: the services are stopped, so
 *      these are stragglers); rename current → keepAs and incoming → current; give keepAs its
 *      connection limit back; COMMIT. A rename waits up to 5 s for terminated sessions to go; if a
 *      new superuser session came in meanwhile, the transaction is tried again.
 * Clients reconnect by name, so after their restart the services use the restored database.
 * Returns the undo; if a later server's swap fails, the earlier ones are swapped back.
 */
export async function swapDatabases(pairs: readonly SwapPair[], logger: Logger): Promise<UndoSwap> {
  const groups = new Map<string, SwapPair[]>();
  for (const pair of pairs) groups.set(pair.server.serverKey, [...(groups.get(pair.server.serverKey) ?? []), pair]);
  const done: SwapPair[][] = [];
  const undo: UndoSwap = async () => {
    const problems: unknown[] = [];
    for (const group of done.slice().reverse()) {
      try {
        await swapOnServer(group.map((p) => ({ server: p.server, database: p.database, incoming: p.keepAs, keepAs: p.incoming })), logger);
      } catch (err) {
        problems.push(err);
      }
    }
    if (problems.length > 0) throw combineErrors(problems[0], problems.slice(1));
  };
  for (const group of groups.values()) {
    try {
      await swapOnServer(group, logger);
      done.push(group);
    } catch (err) {
      if (done.length > 0) {
        try {
          await undo();
        } catch (undoErr) {
          throw combineErrors(err, [undoErr]);
        }
      }
      throw err;
    }
  }
  return undo;
}

async function swapOnServer(pairs: readonly SwapPair[], logger: Logger): Promise<void> {
  const first = pairs[0];
  if (!first) return;
  const server = first.server;
  const limits = new Map<string, string>();
  for (const p of pairs) {
    const limit = await server.value(maintenanceDatabase, `SELECT datconnlimit FROM pg_catalog.pg_database WHERE datname = ${literal(p.database)};`);
    const incoming = await server.value(maintenanceDatabase, `SELECT count(*) FROM pg_catalog.pg_database WHERE datname = ${literal(p.incoming)};`);
    if (limit === '' || incoming !== '1') {
      throw new BackupError('RESTORE_SWAP_FAILED', `cannot swap ${p.database}: ${limit === '' ? `${p.database} does not exist` : `${p.incoming} does not exist`} on the appliance; nothing was renamed`);
    }
    limits.set(p.database, limit);
  }
  const restoreLimits = (names: (p: SwapPair) => string): string => pairs.map((p) => `ALTER DATABASE ${quoteIdent(names(p))} CONNECTION LIMIT ${limits.get(p.database) ?? '-1'};`).join('\n');

  await server.query(maintenanceDatabase, pairs.map((p) => `ALTER DATABASE ${quoteIdent(p.database)} CONNECTION LIMIT 0;`).join('\n'));
  let swapped = false;
  try {
    const terminate = await server.terminateSessionsSql(pairs.flatMap((p) => [p.database, p.incoming]));
    const sql = [
      'BEGIN;',
      terminate,
      ...pairs.map((p) => `ALTER DATABASE ${quoteIdent(p.database)} RENAME TO ${quoteIdent(p.keepAs)};`),
      ...pairs.map((p) => `ALTER DATABASE ${quoteIdent(p.incoming)} RENAME TO ${quoteIdent(p.database)};`),
      restoreLimits((p) => p.keepAs),
      'COMMIT;',
    ].join('\n');
    for (let attempt = 1; ; attempt++) {
      try {
        await server.query(maintenanceDatabase, sql);
        swapped = true;
        break;
      } catch (err) {
        if (attempt >= renameAttempts || !/being accessed by other users/.test(errorMessage(err))) {
          throw new BackupError('RESTORE_SWAP_FAILED', `renaming ${pairs.map((p) => `${p.incoming} → ${p.database}`).join(', ')} failed, nothing was renamed: ${errorMessage(err)}`, { cause: err });
        }
        logger.warn({ attempt, databases: pairs.map((p) => p.database) }, 'a session came back during the rename; ending it and trying again');
      }
    }
    logger.info({ swapped: pairs.map((p) => ({ database: p.database, from: p.incoming, kept: p.keepAs })) }, 'databases swapped');
  } finally {
    if (!swapped) {
      await server.query(maintenanceDatabase, restoreLimits((p) => p.database)).catch((err: unknown) => {
        logger.error({ err }, 'could not give the databases their connection limit back; set it by hand (ALTER DATABASE … CONNECTION LIMIT)');
      });
    }
  }
}
