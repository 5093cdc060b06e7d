import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/**
 * Adapts a plain-SQL dump taken with `pg_dump -c` for loading into an EMPTY scratch database:
 * - the clean section at the top (DROP …, ALTER TABLE … DROP CONSTRAINT/DEFAULT) is left out:
 *   there is nothing to drop, and with ON_ERROR_STOP the first DROP of a missing table would
 *   fail the load;
 * - ownership and privilege statements are left out: the appliance's roles (`vc`) need not
 *   exist on the scratch server, and they say nothing about whether the data loads.
 * COPY data blocks pass through untouched, whatever their lines look like.
 */
export class ScratchSqlFilter extends Transform {
  // A chunk may end inside a multi-byte character: decode across chunk boundaries.
  readonly #decoder = new StringDecoder('utf8');
  #pending = '';
  #inCopy = false;
  #inCleanSection = true;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const text = this.#pending + this.#decoder.write(chunk);
    const lastNewline = text.lastIndexOf('\n');
    if (lastNewline < 0) {
      this.#pending = text;
      callback();
      return;
    }
    this.#pending = text.slice(lastNewline + 1);
    callback(null, this.#filter(text.slice(0, lastNewline + 1)));
  }

  override _flush(callback: TransformCallback): void {
    const rest = this.#pending + this.#decoder.end();
    callback(null, rest ? this.#filter(rest) : '');
  }

  #filter(block: string): string {
    const lines = block.split('\n');
    const out: string[] = [];
    for (const [i, line] of lines.entries()) {
      // The split leaves '' after the final newline: keep the newline structure intact.
      if (i === lines.length - 1) {
        out.push(line);
        continue;
      }
      out.push(this.#keep(line) ? line : '');
    }
    return out.join('\n');
  }

  #keep(line: string): boolean {
    if (this.#inCopy) {
      if (line === '\\.') this.#inCopy = false;
      return true;
    }
    if (/^COPY .* FROM stdin;$/.test(line)) {
      this.#inCopy = true;
      this.#inCleanSection = false;
      return true;
    }
    if (this.#inCleanSection) {
      if (/^DROP /.test(line) || /^ALTER TABLE .* DROP (CONSTRAINT|DEFAULT)\b.*;$/.test(line)) return false;
      if (/^(CREATE|COPY|SET default_|ALTER .* OWNER TO )/.test(line)) this.#inCleanSection = false;
    }
    if (/^ALTER [A-Z ]+ .* OWNER TO [^;]+;$/.test(line)) return false;
    if (/^(GRANT|REVOKE) .*;$/.test(line)) return false;
    return true;
  }
}
