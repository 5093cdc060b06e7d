/**
 * What a vcsa-native manifest records about the appliance's own backup: enough to know what it
 * is and to check it when read back (`verify`), and whether it needs a password to restore —
 * never the password itself.
 */
export interface NativeBackupInfo {
  /** Appliance version and build, from its API (`appliance/system/version`). */
  readonly applianceVersion: string;
  readonly applianceBuild: string;
  /** The appliance's backup job id ("20261201-020000-22617221"). */
  readonly applianceJobId: string;
  readonly parts: readonly string[];
  /** True when the archive was written with a backup password (the installer asks for it on restore). */
  readonly passwordProtected: boolean;
  /** Which API dialect took it: "api" (7.0+) or "rest" (6.7). */
  readonly apiDialect: 'api' | 'rest';
  /** The metadata file among the artifacts (backup-metadata.json), when the appliance wrote one. */
  readonly metadataFile: string | null;
  /** Job duration on the appliance, start to SUCCEEDED, in ms. */
  readonly applianceJobMs: number;
}

export const nativeMetadataFile = 'backup-metadata.json';
