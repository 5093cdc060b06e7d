import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError } from '../errors.ts';

/**
 * fleet.yaml as a plain object, read the way operators write YAML: anchors and aliases (and `<<`
 * merge keys) to share settings between a thousand targets are fine. What is refused, with the
 * file and line: YAML errors, duplicate keys, tags the core schema does not know (`!!js/function`
 * would otherwise become a string — a bucket name, say), nesting deeper than any config needs, and
 * a document whose aliases expand it past `maxExpandedNodes` (an alias bomb). The YAML parser's
 * own defence counts aliases (100), which refuses honest fleets past a hundred targets; the
 * expanded size is what actually costs memory and time.
 */
export const maxExpandedNodes = 500_000;
export const maxNestingDepth = 64;
/** fleet.yaml of 10,000 targets written out in full is a few MiB. */
export const maxConfigBytes = 16 * 1024 * 1024;

export function parseConfigYaml(text: string, source: string): unknown {
  if (Buffer.byteLength(text) > maxConfigBytes) {
    throw new ConfigError([`${source}: larger than ${maxConfigBytes / 1024 / 1024} MiB; a fleet config is a few KiB per target`]);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, merge: true, uniqueKeys: true, prettyErrors: false, strict: true });
  const at = (offset: number | undefined): string => {
    if (offset === undefined) return source;
    const pos = lines.linePos(offset);
    return `${source}:${pos.line}:${pos.col}`;
  };
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    throw new ConfigError(
      problems.map((p) => {
        const message = (p.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
        const hint = p.code === 'TAG_RESOLVE_FAILED' ? '; remove the tag (only plain YAML values are read: strings, numbers, booleans, lists, maps)' : '';
        return `${at(p.pos[0])}: not valid YAML: ${message}${hint}`;
      }),
    );
  }
  checkExpandedSize(doc, at);
  inlineAliases(doc);
  return doc.toJS({ maxAliasCount: -1 }) as unknown;
}

/**
 * Puts each alias's node in its place (shared, not copied), in one document-order walk. yaml's
 * own toJS looks every alias up in a list of all anchors and aliases (quadratic: two of the five
 * seconds a 1,000-target fleet of aliases took to load); once there are none, toJS is linear in
 * the expanded size, which checkExpandedSize has bounded.
 */
function inlineAliases(doc: Document): void {
  const anchors = new Map<string, Node>();
  const resolve = (node: unknown): unknown => {
    if (isAlias(node)) return anchors.get(node.source) ?? node;
    if (isScalar(node) || isMap(node) || isSeq(node)) {
      if (node.anchor !== undefined) anchors.set(node.anchor, node);
      if (isMap(node) || isSeq(node)) {
        node.items.forEach((item, i) => {
          if (isPair(item)) {
            item.key = resolve(item.key);
            item.value = resolve(item.value);
          } else {
            node.items[i] = resolve(item);
          }
        });
      }
    }
    return node;
  };
  doc.contents = resolve(doc.contents) as typeof doc.contents;
}

/**
 * Counts the nodes of the document as if every alias were written out, once per node (memoised:
 * linear in the text even for a bomb), and fails at the first node past the limit, naming its line.
 */
function checkExpandedSize(doc: Document, at: (offset: number | undefined) => string): void {
  const sizes = new Map<Node, number>();
  const open = new Set<Node>();
  // Anchors as the walk meets them, in document order: an alias names the last one before it.
  // (yaml's Alias.resolve(doc) walks the whole document per alias: quadratic, a minute for a
  // 1,000-target fleet of aliases.)
  const anchors = new Map<string, Node>();
  const fail = (node: Node, why: string): never => {
    throw new ConfigError([`${at(node.range?.[0])}: ${why}`]);
  };
  const size = (node: unknown, depth: number): number => {
    if (node === null || node === undefined) return 1;
    if (isPair(node)) return size(node.key, depth) + size(node.value, depth);
    if (!isAlias(node) && !isMap(node) && !isSeq(node) && !isScalar(node)) return 1;
    const known = sizes.get(node);
    if (known !== undefined) return known;
    if (depth > maxNestingDepth) fail(node, `nested deeper than ${maxNestingDepth} levels; a fleet config needs a handful`);
    if (!isAlias(node) && node.anchor !== undefined) anchors.set(node.anchor, node);
    let n = 1;
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      if (target && open.has(target)) fail(node, 'this alias refers to a value that contains it (a cycle)');
      n = target ? size(target, depth + 1) : 1;
    } else if (isMap(node) || isSeq(node)) {
      open.add(node);
      for (const item of node.items) n += size(item, depth + 1);
      open.delete(node);
    }
    if (n > maxExpandedNodes) {
      fail(node, `aliases here expand the document past ${maxExpandedNodes.toLocaleString('en-US')} values (a YAML alias bomb?); write the config out, or share less through aliases`);
    }
    sizes.set(node, n);
    return n;
  };
  size(doc.contents, 0);
}
