import { AbortedError, BackupError } from '../errors.ts';

/** What was being done when an S3 call failed; every field is safe to print. */
export interface S3ErrorContext {
  /** "upload", "download", "list", … */
  readonly operation: string;
  readonly bucket: string;
  readonly key?: string;
  /** Where requests go, without credentials: "https://s3.eu-west-1.amazonaws.com". */
  readonly endpoint: string;
  /** Values that must never appear in a message (the revealed credentials). */
  readonly secrets?: readonly string[];
}

const authCodes = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'Forbidden',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'InvalidSecurity',
  'AllAccessDisabled',
  'AccountProblem',
  'CredentialsProviderError',
]);

const networkCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ECONNABORTED',
  'ESOCKETTIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

const networkNames = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException', 'NetworkingError']);

/** Server answers that a retry will not change: a wrong region or bucket name, a refused storage class. */
const configCodes = new Set([
  'PermanentRedirect',
  'AuthorizationHeaderMalformed',
  'IllegalLocationConstraintException',
  'InvalidBucketName',
  'InvalidStorageClass',
  'InvalidRegion',
]);

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

/** The S3 error code ("NoSuchBucket"), the network error code ("ECONNREFUSED") or the error's name. */
export function s3ErrorName(err: unknown): string {
  if (err === null || typeof err !== 'object') return String(err);
  const e = err as SdkErrorShape;
  if (typeof e.Code === 'string' && e.Code !== '') return e.Code;
  if (typeof e.code === 'string' && e.code !== '') return e.code;
  if (typeof e.name === 'string' && e.name !== '') return e.name;
  return 'Error';
}

export function s3HttpStatus(err: unknown): number | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const status = (err as SdkErrorShape).$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** A missing object (or, for HEAD, which has no body to say which: a missing object or bucket). */
export function isS3NotFound(err: unknown): boolean {
  const name = s3ErrorName(err);
  return name === 'NoSuchKey' || name === 'NotFound' || (s3HttpStatus(err) === 404 && name !== 'NoSuchBucket' && name !== 'NoSuchUpload');
}

/**
 * Whether the server answered that it does not implement this request at all, so the caller
 * falls back (deletes one by one) or skips (lists no multipart uploads). `alsoMeaning` adds codes
 * that mean the same for one request only.
 */
export function isUnsupportedByServer(err: unknown, alsoMeaning: readonly string[] = []): boolean {
  const name = s3ErrorName(err);
  const status = s3HttpStatus(err);
  return ['NotImplemented', 'XNotImplemented', 'MethodNotAllowed', ...alsoMeaning].includes(name) || status === 501 || status === 405;
}

function isNetworkError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const shape = e as SdkErrorShape;
    if (typeof shape.code === 'string' && networkCodes.has(shape.code)) return true;
    if (typeof shape.name === 'string' && networkNames.has(shape.name)) return true;
  }
  return false;
}

/** Replaces any revealed credential in text; a second line of defence behind our own messages. */
function scrubSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('**redacted**');
  }
  return out;
}

/**
 * Turns whatever the AWS SDK threw into a BackupError with a stable code and a message that says
 * what to fix. The SDK error stays as `cause` (it carries no credentials: the SDK does not attach
 * the signed request to errors).
 */
export function s3ErrorToBackupError(err: unknown, ctx: S3ErrorContext): BackupError {
  if (err instanceof BackupError) return err;
  const name = s3ErrorName(err);
  const status = s3HttpStatus(err);
  const where = ctx.key === undefined ? `s3://${ctx.bucket}` : `s3://${ctx.bucket}/${ctx.key}`;
  const details = { operation: ctx.operation, bucket: ctx.bucket, ...(ctx.key === undefined ? {} : { key: ctx.key }), s3Code: name, ...(status === undefined ? {} : { httpStatus: status }), endpoint: ctx.endpoint };
  const raw = scrubSecrets(err instanceof Error ? err.message : String(err), ctx.secrets);
  const make = (code: string, message: string, permanent: boolean): BackupError =>
    new BackupError(code, scrubSecrets(message, ctx.secrets), { permanent, cause: err, details });

  if (name === 'AbortError' || (err instanceof Error && err.name === 'AbortError')) {
    return new AbortedError(`S3 ${ctx.operation} of ${where}`);
  }
  if (name === 'NoSuchBucket') {
    return make(
      'S3_NO_SUCH_BUCKET',
      `S3 bucket "${ctx.bucket}" does not exist at ${ctx.endpoint} (${ctx.operation}); create it, or set s3.createBucket: true to let vcsa-backup create it, and check s3.bucket and s3.region`,
      true,
    );
  }
  if (authCodes.has(name) || status === 403 || status === 401) {
    const credentialHint =
      name === 'CredentialsProviderError'
        ? 'no credentials were found: set s3.accessKeyId and s3.secretAccessKey, or provide them through the AWS credential chain (environment, shared config, instance role)'
        : 'check the credentials (s3.accessKeyId, s3.secretAccessKey, s3.sessionToken or the AWS credential chain) and that the IAM policy allows this action on the bucket (`vcsa-backup iam-policy` prints one)';
    return make('S3_AUTH', `S3 refused ${ctx.operation} of ${where} (${name}${status === undefined ? '' : `, HTTP ${status}`}): ${credentialHint}`, true);
  }
  if (name === 'NoSuchKey' || name === 'NotFound' || (status === 404 && name !== 'NoSuchUpload')) {
    return make('OBJECT_NOT_FOUND', `${where} does not exist (${ctx.operation}); check the key, or list the backups that exist`, true);
  }
  if (isNetworkError(err)) {
    return make(
      'S3_UNREACHABLE',
      `cannot reach the S3 endpoint ${ctx.endpoint} for ${ctx.operation} of ${where} (${name}: ${raw}); check s3.endpoint and that the server is up and reachable; the step will be retried`,
      false,
    );
  }
  if (name === 'EntityTooLarge' || status === 413) {
    // Small S3-compatible servers cap request bodies (the embedded endpoint at about 11 MiB);
    // a retry with the same part size fails the same way.
    return make(
      'S3_ENTITY_TOO_LARGE',
      `S3 endpoint ${ctx.endpoint} refused a request body as too large (${ctx.operation} of ${where}, ${name}${status === undefined ? '' : `, HTTP ${status}`}); lower s3.partSizeMiB (at least 5) to a part size the server accepts`,
      true,
    );
  }
  if (configCodes.has(name) || status === 301) {
    return make('S3_ERROR', `S3 refused ${ctx.operation} of ${where} (${name}): ${raw}; check s3.region, s3.endpoint, s3.bucket and s3.storageClass`, true);
  }
  return make('S3_ERROR', `S3 ${ctx.operation} of ${where} failed (${name}${status === undefined ? '' : `, HTTP ${status}`}): ${raw}`, false);
}
