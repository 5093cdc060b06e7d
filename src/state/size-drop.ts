/**
 * "Is this backup suddenly much smaller than the one before?" — the classic sign of a broken
 * dump (an empty table, a truncated file) that still exits 0. The threshold is
 * retention.minSizeRatio, the same ratio below which retention refuses to prune.
 */
export interface SizedBackup {
  readonly id: string;
  readonly at: string;
  readonly bytes: number;
  readonly rawBytes: number;
}

export interface SizeDrop {
  readonly id: string;
  readonly bytes: number;
  readonly previousId: string;
  readonly previousBytes: number;
  /** bytes / previousBytes. */
  readonly ratio: number;
  readonly threshold: number;
}

/** Newest first: compares the first with the second; null when there is no drop (or nothing to compare). */
export function sizeDrop(newestFirst: readonly SizedBackup[], threshold: number): SizeDrop | null {
  const [latest, previous] = newestFirst;
  if (!latest || !previous || previous.bytes <= 0) return null;
  const ratio = latest.bytes / previous.bytes;
  return ratio < threshold ? { id: latest.id, bytes: latest.bytes, previousId: previous.id, previousBytes: previous.bytes, ratio, threshold } : null;
}

/** Every backup of a list (newest first) that is smaller than threshold × the one after it in the list (the one before in time). */
export function sizeDrops(newestFirst: readonly SizedBackup[], threshold: number): Map<string, SizeDrop> {
  const out = new Map<string, SizeDrop>();
  for (let i = 0; i + 1 < newestFirst.length; i++) {
    const drop = sizeDrop(newestFirst.slice(i, i + 2), threshold);
    if (drop) out.set(drop.id, drop);
  }
  return out;
}
