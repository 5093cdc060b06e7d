/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A template tag that escapes every interpolated value unless it is `raw`. */
export class RawHtml {
  constructor(readonly html: string) {}
  toString(): string {
    return this.html;
  }
}

export function raw(html: string): RawHtml {
  return new RawHtml(html);
}

type HtmlValue = string | number | RawHtml | null | undefined | readonly (string | RawHtml)[];

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): RawHtml {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += render(v) + (strings[i + 1] ?? '');
  });
  return new RawHtml(out);
}

function render(v: HtmlValue): string {
  if (v === null || v === undefined) return '';
  if (v instanceof RawHtml) return v.html;
  if (Array.isArray(v)) return (v as readonly (string | RawHtml)[]).map((x) => render(x)).join('');
  return escapeHtml(String(v));
}
