import { readFile } from 'node:fs/promises';
import { BackupError } from '../errors.ts';

/** One line of a simulated fleet's audit.jsonl (DESIGN §6). */
export interface AuditEntry {
  readonly ts: number;
  readonly appliance: string;
  readonly service: string;
  readonly state: 'stopped' | 'running';
}

/** A stretch of time during which at least one service of an appliance was stopped. */
export interface QuiesceInterval {
  readonly appliance: string;
  /** The first "stopped" line of the stretch. */
  readonly from: number;
  /** The "running" line that brought the last stopped service back; null if the log ends before that. */
  readonly to: number | null;
  /** Every service that was stopped during the stretch. */
  readonly services: readonly string[];
}

export interface QuiesceOverlap {
  readonly a: QuiesceInterval;
  readonly b: QuiesceInterval;
}

function isEntry(value: unknown): value is AuditEntry {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  return typeof v['ts'] === 'number' && typeof v['appliance'] === 'string' && typeof v['service'] === 'string' && (v['state'] === 'stopped' || v['state'] === 'running');
}

export function parseAudit(text: string, source = 'audit log'): AuditEntry[] {
  const entries: AuditEntry[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new BackupError('SIM_AUDIT_INVALID', `${source}:${i + 1}: not a JSON line: ${line.slice(0, 120)}`);
    }
    if (!isEntry(value)) throw new BackupError('SIM_AUDIT_INVALID', `${source}:${i + 1}: expected {"ts", "appliance", "service", "state"}: ${line.slice(0, 120)}`);
    entries.push({ ts: value.ts, appliance: value.appliance, service: value.service, state: value.state });
  });
  return entries;
}

/** Reads audit.jsonl; a missing file is an empty log (nothing has changed state yet). */
export async function readAudit(path: string): Promise<AuditEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return parseAudit(text, path);
}

/** Entries by time; lines with the same millisecond keep their order in the file. */
function byTime(entries: readonly AuditEntry[]): AuditEntry[] {
  return entries.map((e, i) => ({ e, i })).sort((x, y) => x.e.ts - y.e.ts || x.i - y.i).map((x) => x.e);
}

/**
 * Per appliance, the intervals during which any of its services was stopped. Appliances start
 * with every service running (a booted appliance); a "running" line for a running service and
 * a "stopped" line for a stopped one change nothing.
 */
export function quiesceIntervals(entries: readonly AuditEntry[]): QuiesceInterval[] {
  const open = new Map<string, { from: number; stopped: Set<string>; services: Set<string> }>();
  const intervals: QuiesceInterval[] = [];
  for (const entry of byTime(entries)) {
    const current = open.get(entry.appliance);
    if (entry.state === 'stopped') {
      if (current) {
        current.stopped.add(entry.service);
        current.services.add(entry.service);
      } else {
        open.set(entry.appliance, { from: entry.ts, stopped: new Set([entry.service]), services: new Set([entry.service]) });
      }
    } else if (current) {
      current.stopped.delete(entry.service);
      if (current.stopped.size === 0) {
        intervals.push({ appliance: entry.appliance, from: current.from, to: entry.ts, services: [...current.services] });
        open.delete(entry.appliance);
      }
    }
  }
  for (const [appliance, current] of open) intervals.push({ appliance, from: current.from, to: null, services: [...current.services] });
  return intervals.sort((x, y) => x.from - y.from);
}

/**
 * Pairs of intervals of different appliances that overlap in time. Touching is not overlapping:
 * one appliance's services are confirmed running (its "running" line written) before the next
 * appliance's stop is confirmed, so under a correct fleet lease `a.to <= b.from`.
 */
export function findOverlaps(intervals: readonly QuiesceInterval[]): QuiesceOverlap[] {
  const overlaps: QuiesceOverlap[] = [];
  const sorted = [...intervals].sort((x, y) => x.from - y.from);
  sorted.forEach((a, i) => {
    for (const b of sorted.slice(i + 1)) {
      if (b.appliance === a.appliance) continue;
      if (b.from < (a.to ?? Infinity)) overlaps.push({ a, b });
    }
  });
  return overlaps;
}

/** The most appliances quiesced at one instant: for fleets with quiesce.maxConcurrent above 1. */
export function maxConcurrentQuiesced(intervals: readonly QuiesceInterval[]): number {
  // Ends sort before starts at the same instant, matching findOverlaps.
  const events = intervals.flatMap((i) => [
    { at: i.from, delta: 1 },
    { at: i.to ?? Infinity, delta: -1 },
  ]);
  events.sort((x, y) => x.at - y.at || x.delta - y.delta);
  let now = 0;
  let max = 0;
  for (const e of events) {
    now += e.delta;
    max = Math.max(max, now);
  }
  return max;
}

/** Services left stopped at the end of the log, per appliance (empty: everything came back). */
export function servicesLeftStopped(entries: readonly AuditEntry[]): { appliance: string; service: string }[] {
  const last = new Map<string, AuditEntry>();
  for (const entry of byTime(entries)) last.set(`${entry.appliance}\u0000${entry.service}`, entry);
  return [...last.values()].filter((e) => e.state === 'stopped').map((e) => ({ appliance: e.appliance, service: e.service }));
}

/** True when every appliance in the log ended with all its services running. */
export function allServicesRunningAtEnd(entries: readonly AuditEntry[]): boolean {
  return servicesLeftStopped(entries).length === 0;
}

/** Invariants 1 and 2 over a whole audit log, for tests and the demo's summary. */
export interface AuditReport {
  readonly intervals: readonly QuiesceInterval[];
  /** Pairs of appliances quiesced at the same time (meaningful when maxConcurrent is 1). */
  readonly overlaps: readonly QuiesceOverlap[];
  readonly maxConcurrent: number;
  readonly leftStopped: readonly { appliance: string; service: string }[];
  /** At most `allowed` appliances quiesced at once, and every service running at the end. */
  readonly ok: boolean;
}

export function auditReport(entries: readonly AuditEntry[], allowed = 1): AuditReport {
  const intervals = quiesceIntervals(entries);
  const maxConcurrent = maxConcurrentQuiesced(intervals);
  const leftStopped = servicesLeftStopped(entries);
  return { intervals, overlaps: findOverlaps(intervals), maxConcurrent, leftStopped, ok: maxConcurrent <= allowed && leftStopped.length === 0 };
}
