/**
 * The simulated VCSA 5.5 fleet: appliances backed by real PostgreSQL databases, the audit log
 * that proves invariants 1 and 2, and the dump checks that show quiescing matters.
 */
export { createSimAppliance, simServices, type SimAppliance, type SimApplianceOptions, type SimService } from './appliance.ts';
export {
  allServicesRunningAtEnd,
  auditReport,
  findOverlaps,
  maxConcurrentQuiesced,
  parseAudit,
  quiesceIntervals,
  readAudit,
  servicesLeftStopped,
  type AuditEntry,
  type AuditReport,
  type QuiesceInterval,
  type QuiesceOverlap,
} from './audit.ts';
export { dumpPairSequences, inventorySequenceFromArchive, inventorySequenceFromSql, vcdbSequenceFromSql } from './dump-sequences.ts';
export { applianceNames, readSimJson, startSimFleet, type SimFleet, type SimFleetOptions, type SimJson } from './fleet.ts';
