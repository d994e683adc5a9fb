/**
 * Redaction of bearer tokens on every output path. A compact JWS/JWT (`eyJ<header>.<payload>.
 * <signature>`) is what Azure AD and Kubernetes service accounts issue; this tool never prints,
 * logs or stores one, so any such value found in a file it reads (a tampered journal, a
 * server's error message) is shown as {@link REDACTED}.
 */

/** What a token-shaped value is printed as. */
export const REDACTED = '[redacted]';

/** Matches a compact JWS/JWT anywhere in a string. */
export const TOKEN_PATTERN = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;

/** `text` with every token-shaped value replaced by {@link REDACTED}. */
export function redactText(text: string): string {
  return text.replace(TOKEN_PATTERN, REDACTED);
}

/**
 * JSON paths (`$.steps.assign.data.note`) of every string, or object key, in `value` that looks
 * like a token. Never the values themselves.
 */
export function tokenPaths(value: unknown, path = '$'): string[] {
  const out: string[] = [];
  const test = (s: string): boolean => new RegExp(TOKEN_PATTERN.source).test(s);
  const walk = (v: unknown, p: string): void => {
    if (typeof v === 'string') {
      if (test(v)) out.push(p);
      return;
    }
    if (Array.isArray(v)) {
      v.forEach((item, i) => walk(item, `${p}[${i}]`));
      return;
    }
    if (v && typeof v === 'object') {
      for (const [key, item] of Object.entries(v)) {
        if (test(key)) out.push(`${p} (a key)`);
        walk(item, `${p}.${key}`);
      }
    }
  };
  walk(value, path);
  return out;
}

/** A deep copy of `value` with every token-shaped string (and object key) redacted. */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return redactText(value) as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [redactText(k), redactDeep(v)])) as T;
  }
  return value;
}

/** A writable that redacts every chunk before passing it on (keeps `isTTY`). */
export function redactingStream<S extends { write(chunk: string): boolean; isTTY?: boolean }>(stream: S): S {
  const wrapped = Object.create(stream) as S;
  wrapped.write = (chunk: string) => stream.write(typeof chunk === 'string' ? redactText(chunk) : chunk);
  return wrapped;
}
