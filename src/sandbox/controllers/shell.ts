/**
 * A small POSIX-shell interpreter for the command lines that probes and test pods run:
 * quoting, `$VAR` / `${VAR}` / `${VAR:-default}` / `$?` / `$(...)` expansion, `&&`, `||`,
 * `;`, pipelines, `!`, `until` / `while` / `if` / `for`, `{ ...; }` and `( ... )` groups,
 * `set -e`, redirections to and from files and `/dev/null`, and builtins (`echo`, `printf`,
 * `sleep`, `exit`, `true`, `false`, `test`/`[`, `cat`, `head`, `grep`, `wc`, `cut`, `printenv`,
 * `export`, `set`) plus whatever external commands the caller provides (curl and wget).
 *
 * Anything it does not implement ends the script the way a shell lacking that command
 * would (`sh: <cmd>: not found`, exit 127), so an unsupported command line never appears to
 * succeed.
 */
import type { Clock } from '../clock.ts';

/** Thrown when a script uses syntax the interpreter does not implement, or has a syntax error. */
export class ShellSyntaxError extends Error {
  readonly token: string;
  readonly unsupported: boolean;
  constructor(token: string, message: string, unsupported: boolean) {
    super(message);
    this.name = 'ShellSyntaxError';
    this.token = token;
    this.unsupported = unsupported;
  }
}

// ---- AST ------------------------------------------------------------------------------------

type WordPart =
  | { k: 'lit'; text: string; quoted: boolean }
  | { k: 'var'; name: string; quoted: boolean; op?: ':-' | '-' | ':+' | '+'; arg?: Word }
  | { k: 'sub'; script: string; quoted: boolean };

interface Word {
  parts: WordPart[];
}

interface Redirect {
  fd: number;
  op: '>' | '>>' | '<' | '>&';
  target: Word;
}

type Command =
  | { t: 'simple'; assigns: { name: string; value: Word }[]; words: Word[]; redirs: Redirect[] }
  | { t: 'loop'; until: boolean; cond: ListNode; body: ListNode; redirs: Redirect[] }
  | { t: 'if'; branches: { cond: ListNode; body: ListNode }[]; otherwise?: ListNode; redirs: Redirect[] }
  | { t: 'for'; name: string; items: Word[] | undefined; body: ListNode; redirs: Redirect[] }
  | { t: 'group'; body: ListNode; subshell: boolean; redirs: Redirect[] };

interface Pipeline {
  negate: boolean;
  commands: Command[];
}

interface AndOr {
  first: Pipeline;
  rest: { op: '&&' | '||'; pipeline: Pipeline }[];
}

interface ListNode {
  items: AndOr[];
}

// ---- tokenizer ------------------------------------------------------------------------------

type Token = { k: 'word'; word: Word; raw: string } | { k: 'op'; op: string } | { k: 'nl' } | { k: 'eof' };

const OPS = ['&&', '||', '>>', '>&', ';;', '<<', ';', '|', '&', '(', ')', '<', '>'];

function isNameChar(c: string): boolean {
  return /[A-Za-z0-9_]/.test(c);
}

/** Finds the `)` that closes a `$(` starting at `i` (just after the parenthesis), honouring quotes and nesting. */
function findClose(s: string, i: number): number {
  let depth = 1;
  for (; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === "'") {
      const j = s.indexOf("'", i + 1);
      if (j < 0) return -1;
      i = j;
      continue;
    }
    if (c === '"') {
      for (i++; i < s.length && s[i] !== '"'; i++) if (s[i] === '\\') i++;
      continue;
    }
    if (c === '(') depth++;
    if (c === ')' && --depth === 0) return i;
  }
  return -1;
}

class Lexer {
  private readonly s: string;
  private i = 0;

  constructor(s: string) {
    this.s = s;
  }

  tokens(): Token[] {
    const out: Token[] = [];
    for (;;) {
      const t = this.next();
      out.push(t);
      if (t.k === 'eof') return out;
    }
  }

  private next(): Token {
    const s = this.s;
    while (this.i < s.length) {
      const c = s[this.i];
      if (c === ' ' || c === '\t') this.i++;
      else if (c === '\\' && s[this.i + 1] === '\n') this.i += 2;
      else if (c === '#') {
        while (this.i < s.length && s[this.i] !== '\n') this.i++;
      } else break;
    }
    if (this.i >= s.length) return { k: 'eof' };
    if (s[this.i] === '\n') {
      this.i++;
      return { k: 'nl' };
    }
    // `2>`, `2>&1`, `1>`: a file-descriptor number glued to a redirection.
    const fdm = /^(\d)(>>|>&|>|<)/.exec(s.slice(this.i, this.i + 3));
    if (fdm) {
      this.i += fdm[0].length;
      return { k: 'op', op: fdm[1] + fdm[2] };
    }
    for (const op of OPS) {
      if (s.startsWith(op, this.i)) {
        if (op === '<<') throw new ShellSyntaxError('<<', 'here-documents are not supported', true);
        if (op === ';;') throw new ShellSyntaxError('case', 'case statements are not supported', true);
        this.i += op.length;
        return { k: 'op', op };
      }
    }
    return this.word();
  }

  private word(): Token {
    const s = this.s;
    const start = this.i;
    const parts: WordPart[] = [];
    let lit = '';
    let litQuoted = false;
    const flush = () => {
      if (lit) parts.push({ k: 'lit', text: lit, quoted: litQuoted });
      lit = '';
    };
    const pushLit = (text: string, quoted: boolean) => {
      if (quoted !== litQuoted) flush();
      litQuoted = quoted;
      lit += text;
    };
    const dollar = (quoted: boolean) => {
      // at s[this.i] === '$'
      const n = s[this.i + 1];
      if (n === '(') {
        if (s[this.i + 2] === '(') throw new ShellSyntaxError('$((', 'arithmetic expansion is not supported', true);
        const end = findClose(s, this.i + 2);
        if (end < 0) throw new ShellSyntaxError('$(', "syntax error: unterminated quoted string", false);
        flush();
        parts.push({ k: 'sub', script: s.slice(this.i + 2, end), quoted });
        this.i = end + 1;
        return;
      }
      if (n === '{') {
        const end = s.indexOf('}', this.i + 2);
        if (end < 0) throw new ShellSyntaxError('${', 'syntax error: bad substitution', false);
        const inner = s.slice(this.i + 2, end);
        const m = /^([A-Za-z_][A-Za-z0-9_]*|[0-9?#@*$!])(?:(:-|-|:\+|\+)(.*))?$/s.exec(inner);
        if (!m) throw new ShellSyntaxError('${' + inner + '}', `\${${inner}}: bad substitution`, true);
        flush();
        const arg = m[2] !== undefined ? (new Lexer(m[3]).tokens()[0] as any)?.word ?? { parts: [] } : undefined;
        parts.push({ k: 'var', name: m[1], quoted, op: m[2] as any, arg });
        this.i = end + 1;
        return;
      }
      if (n !== undefined && /[A-Za-z_]/.test(n)) {
        let j = this.i + 1;
        while (j < s.length && isNameChar(s[j])) j++;
        flush();
        parts.push({ k: 'var', name: s.slice(this.i + 1, j), quoted });
        this.i = j;
        return;
      }
      if (n !== undefined && /[0-9?#@*$!]/.test(n)) {
        flush();
        parts.push({ k: 'var', name: n, quoted });
        this.i += 2;
        return;
      }
      pushLit('$', quoted);
      this.i++;
    };
    while (this.i < s.length) {
      const c = s[this.i];
      if (c === ' ' || c === '\t' || c === '\n' || c === ';' || c === '&' || c === '|' || c === '<' || c === '>' || c === '(' || c === ')') break;
      if (c === '\\') {
        if (this.i + 1 < s.length && s[this.i + 1] !== '\n') pushLit(s[this.i + 1], true);
        this.i += 2;
        continue;
      }
      if (c === "'") {
        const end = s.indexOf("'", this.i + 1);
        if (end < 0) throw new ShellSyntaxError("'", 'syntax error: unterminated quoted string', false);
        pushLit(s.slice(this.i + 1, end), true);
        if (end === this.i + 1) {
          flush();
          parts.push({ k: 'lit', text: '', quoted: true });
        }
        this.i = end + 1;
        continue;
      }
      if (c === '"') {
        this.i++;
        let empty = true;
        while (this.i < s.length && s[this.i] !== '"') {
          empty = false;
          const d = s[this.i];
          if (d === '\\' && '$`"\\\n'.includes(s[this.i + 1] ?? '')) {
            if (s[this.i + 1] !== '\n') pushLit(s[this.i + 1], true);
            this.i += 2;
          } else if (d === '$') dollar(true);
          else if (d === '`') throw new ShellSyntaxError('`', 'backquote command substitution is not supported', true);
          else {
            pushLit(d, true);
            this.i++;
          }
        }
        if (this.i >= s.length) throw new ShellSyntaxError('"', 'syntax error: unterminated quoted string', false);
        this.i++;
        if (empty) {
          flush();
          parts.push({ k: 'lit', text: '', quoted: true });
        }
        continue;
      }
      if (c === '`') throw new ShellSyntaxError('`', 'backquote command substitution is not supported', true);
      if (c === '$') {
        dollar(false);
        continue;
      }
      pushLit(c, false);
      this.i++;
    }
    flush();
    return { k: 'word', word: { parts }, raw: s.slice(start, this.i) };
  }
}

// ---- parser ---------------------------------------------------------------------------------

const RESERVED_END = new Set(['do', 'done', 'then', 'fi', 'else', 'elif', '}']);

function plainWord(t: Token): string | undefined {
  if (t.k !== 'word') return undefined;
  if (t.word.parts.length !== 1) return undefined;
  const p = t.word.parts[0];
  return p.k === 'lit' && !p.quoted ? p.text : undefined;
}

class Parser {
  private readonly toks: Token[];
  private i = 0;

  constructor(script: string) {
    this.toks = new Lexer(script).tokens();
  }

  parse(): ListNode {
    const l = this.list();
    const t = this.peek();
    if (t.k !== 'eof') throw this.unexpected(t);
    return l;
  }

  private peek(): Token {
    return this.toks[this.i];
  }

  private take(): Token {
    return this.toks[this.i++];
  }

  private unexpected(t: Token): ShellSyntaxError {
    const text = t.k === 'word' ? t.raw : t.k === 'op' ? t.op : t.k === 'nl' ? 'newline' : 'end of file';
    return new ShellSyntaxError(text, `syntax error: unexpected "${text}"`, false);
  }

  private skipNewlines(): void {
    while (this.peek().k === 'nl') this.i++;
  }

  private atListEnd(): boolean {
    const t = this.peek();
    if (t.k === 'eof') return true;
    if (t.k === 'op' && t.op === ')') return true;
    const w = plainWord(t);
    return w !== undefined && RESERVED_END.has(w);
  }

  private list(): ListNode {
    const items: AndOr[] = [];
    this.skipNewlines();
    while (!this.atListEnd()) {
      items.push(this.andOr());
      const t = this.peek();
      if (t.k === 'op' && t.op === '&') throw new ShellSyntaxError('&', 'background jobs (&) are not supported', true);
      if ((t.k === 'op' && t.op === ';') || t.k === 'nl') {
        this.i++;
        this.skipNewlines();
        continue;
      }
      break;
    }
    return { items };
  }

  private andOr(): AndOr {
    const first = this.pipeline();
    const rest: AndOr['rest'] = [];
    for (;;) {
      const t = this.peek();
      if (t.k === 'op' && (t.op === '&&' || t.op === '||')) {
        this.i++;
        this.skipNewlines();
        rest.push({ op: t.op as '&&' | '||', pipeline: this.pipeline() });
      } else return { first, rest };
    }
  }

  private pipeline(): Pipeline {
    let negate = false;
    if (plainWord(this.peek()) === '!') {
      negate = true;
      this.i++;
    }
    const commands = [this.command()];
    while (this.peek().k === 'op' && (this.peek() as any).op === '|') {
      this.i++;
      this.skipNewlines();
      commands.push(this.command());
    }
    return { negate, commands };
  }

  private expectWord(w: string): void {
    const t = this.take();
    if (plainWord(t) !== w) throw this.unexpected(t);
  }

  private command(): Command {
    const t = this.peek();
    const w = plainWord(t);
    if (t.k === 'op' && t.op === '(') {
      this.i++;
      const body = this.list();
      const close = this.take();
      if (close.k !== 'op' || close.op !== ')') throw this.unexpected(close);
      return { t: 'group', body, subshell: true, redirs: this.redirects() };
    }
    switch (w) {
      case 'until':
      case 'while': {
        this.i++;
        const cond = this.list();
        this.expectWord('do');
        const body = this.list();
        this.expectWord('done');
        return { t: 'loop', until: w === 'until', cond, body, redirs: this.redirects() };
      }
      case 'if': {
        this.i++;
        const branches: { cond: ListNode; body: ListNode }[] = [];
        let otherwise: ListNode | undefined;
        const cond = this.list();
        this.expectWord('then');
        branches.push({ cond, body: this.list() });
        for (;;) {
          const k = plainWord(this.take());
          if (k === 'elif') {
            const c = this.list();
            this.expectWord('then');
            branches.push({ cond: c, body: this.list() });
          } else if (k === 'else') {
            otherwise = this.list();
            this.expectWord('fi');
            break;
          } else if (k === 'fi') break;
          else throw this.unexpected(this.toks[this.i - 1]);
        }
        return { t: 'if', branches, otherwise, redirs: this.redirects() };
      }
      case 'for': {
        this.i++;
        const nameTok = this.take();
        const name = plainWord(nameTok);
        if (!name || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw this.unexpected(nameTok);
        let items: Word[] | undefined;
        this.skipNewlines();
        if (plainWord(this.peek()) === 'in') {
          this.i++;
          items = [];
          while (this.peek().k === 'word') items.push((this.take() as any).word);
        }
        const sep = this.peek();
        if ((sep.k === 'op' && sep.op === ';') || sep.k === 'nl') this.i++;
        this.skipNewlines();
        this.expectWord('do');
        const body = this.list();
        this.expectWord('done');
        return { t: 'for', name, items, body, redirs: this.redirects() };
      }
      case '{': {
        this.i++;
        const body = this.list();
        this.expectWord('}');
        return { t: 'group', body, subshell: false, redirs: this.redirects() };
      }
      case 'case':
      case 'function':
      case 'select':
        throw new ShellSyntaxError(w, `${w} is not supported`, true);
      default:
        return this.simple();
    }
  }

  private redirects(): Redirect[] {
    const out: Redirect[] = [];
    for (;;) {
      const r = this.redirect();
      if (!r) return out;
      out.push(r);
    }
  }

  private redirect(): Redirect | undefined {
    const t = this.peek();
    if (t.k !== 'op') return undefined;
    const m = /^(\d)?(>>|>&|>|<)$/.exec(t.op);
    if (!m) return undefined;
    this.i++;
    const target = this.take();
    if (target.k !== 'word') throw this.unexpected(target);
    const op = m[2] as Redirect['op'];
    const fd = m[1] !== undefined ? Number(m[1]) : op === '<' ? 0 : 1;
    return { fd, op, target: target.word };
  }

  private simple(): Command {
    const assigns: { name: string; value: Word }[] = [];
    const words: Word[] = [];
    const redirs: Redirect[] = [];
    for (;;) {
      const r = this.redirect();
      if (r) {
        redirs.push(r);
        continue;
      }
      const t = this.peek();
      if (t.k !== 'word') break;
      if (words.length && RESERVED_END.has(plainWord(t) ?? '\0') && false) break;
      const first = t.word.parts[0];
      const am = words.length === 0 && first?.k === 'lit' && !first.quoted ? /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(first.text) : null;
      this.i++;
      if (am) {
        const rest: WordPart[] = [{ k: 'lit', text: first.k === 'lit' ? first.text.slice(am[0].length) : '', quoted: true }, ...t.word.parts.slice(1)];
        assigns.push({ name: am[1], value: { parts: rest } });
      } else words.push(t.word);
    }
    if (!words.length && !assigns.length && !redirs.length) throw this.unexpected(this.peek());
    return { t: 'simple', assigns, words, redirs };
  }
}

/** Parses a script (throws {@link ShellSyntaxError}); exported for tests and for early validation. */
export function parseScript(script: string): void {
  new Parser(script).parse();
}

// ---- interpreter ----------------------------------------------------------------------------

/** Where a command writes: stdout and stderr sinks, and its stdin text. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  stdin: string;
}

/** An external command the shell can run (curl, wget). */
export type ExternalCommand = (argv: string[], io: Io, shell: Shell) => Promise<number>;

/** Ends the script with a status (the `exit` builtin, or a kill). */
class ExitSignal {
  readonly code: number;
  constructor(code: number) {
    this.code = code;
  }
}

export interface ShellOptions {
  clock: Clock;
  signal: AbortSignal;
  env: Record<string, string>;
  commands: Record<string, ExternalCommand>;
  /** `$0` and the shell's name in error messages (`sh`, `bash`). */
  name?: string;
  positional?: string[];
  /** Read-only files from the container's volumes (projected tokens), read at each access. */
  readMounted?: (path: string) => string | undefined;
}

/** Runs scripts; one instance is one shell process. */
export class Shell {
  readonly clock: Clock;
  readonly signal: AbortSignal;
  readonly vars: Record<string, string>;
  readonly files = new Map<string, string>();
  private readonly commands: Record<string, ExternalCommand>;
  private readonly name: string;
  private readonly positional: string[];
  private readonly readMounted?: (path: string) => string | undefined;
  private status = 0;
  /** Counts waits on the clock, so a loop can tell whether its body ever yielded. */
  sleeps = 0;
  private errexit = false;
  private conditionDepth = 0;

  constructor(opts: ShellOptions) {
    this.clock = opts.clock;
    this.signal = opts.signal;
    this.vars = { ...opts.env };
    this.commands = opts.commands;
    this.name = opts.name ?? 'sh';
    this.positional = opts.positional ?? [];
    this.readMounted = opts.readMounted;
  }

  /** A file's content as the script sees it: written by the script, else from a volume; undefined when absent. */
  readFile(path: string): string | undefined {
    return this.files.get(path) ?? this.readMounted?.(path);
  }

  /** Runs a whole script and returns its exit status; syntax errors give 2 (127 for unsupported syntax). */
  async run(script: string, io: Io): Promise<number> {
    let ast: ListNode;
    try {
      ast = new Parser(script).parse();
    } catch (e) {
      if (e instanceof ShellSyntaxError) {
        if (e.unsupported) {
          io.err(`${this.name}: ${e.token}: not found\n`);
          return 127;
        }
        io.err(`${this.name}: ${e.message}\n`);
        return 2;
      }
      throw e;
    }
    try {
      return await this.list(ast, io);
    } catch (e) {
      if (e instanceof ExitSignal) return e.code;
      throw e;
    }
  }

  /** Runs a single command given as argv (a container without a shell), e.g. `curl -s URL`. */
  async exec(argv: string[], io: Io): Promise<number> {
    try {
      return await this.invoke(argv, io);
    } catch (e) {
      if (e instanceof ExitSignal) return e.code;
      throw e;
    }
  }

  private checkKilled(): void {
    if (this.signal.aborted) throw new ExitSignal(137);
  }

  private async list(l: ListNode, io: Io): Promise<number> {
    let st = this.status;
    for (const item of l.items) {
      st = await this.andOr(item, io);
      if (st !== 0 && this.errexit && this.conditionDepth === 0 && item.rest.length === 0 && !item.first.negate) throw new ExitSignal(st);
    }
    return st;
  }

  private async andOr(a: AndOr, io: Io): Promise<number> {
    const guarded = a.rest.length > 0;
    if (guarded) this.conditionDepth++;
    let st: number;
    try {
      st = await this.pipeline(a.first, io);
      for (let i = 0; i < a.rest.length; i++) {
        const r = a.rest[i];
        const last = i === a.rest.length - 1;
        if ((r.op === '&&' && st === 0) || (r.op === '||' && st !== 0)) {
          if (last) this.conditionDepth--;
          try {
            st = await this.pipeline(r.pipeline, io);
          } finally {
            if (last) this.conditionDepth++;
          }
        }
      }
    } finally {
      if (guarded) this.conditionDepth--;
    }
    this.status = st;
    return st;
  }

  private async pipeline(p: Pipeline, io: Io): Promise<number> {
    if (p.negate) this.conditionDepth++;
    let st = 0;
    try {
      let stdin = io.stdin;
      for (let i = 0; i < p.commands.length; i++) {
        const last = i === p.commands.length - 1;
        let captured = '';
        const cio: Io = last ? { ...io, stdin } : { out: (t) => (captured += t), err: io.err, stdin };
        st = await this.command(p.commands[i], cio);
        stdin = captured;
      }
    } finally {
      if (p.negate) this.conditionDepth--;
    }
    st = p.negate ? (st === 0 ? 1 : 0) : st;
    this.status = st;
    return st;
  }

  private async command(c: Command, io: Io): Promise<number> {
    this.checkKilled();
    const rio = await this.applyRedirects(c.redirs, io);
    if (typeof rio === 'number') return rio;
    switch (c.t) {
      case 'simple':
        return this.simple(c, rio);
      case 'group':
        return this.list(c.body, rio);
      case 'if': {
        for (const b of c.branches) {
          this.conditionDepth++;
          let cond: number;
          try {
            cond = await this.list(b.cond, rio);
          } finally {
            this.conditionDepth--;
          }
          if (cond === 0) return this.list(b.body, rio);
        }
        return c.otherwise ? this.list(c.otherwise, rio) : 0;
      }
      case 'loop': {
        let st = 0;
        for (;;) {
          this.checkKilled();
          this.conditionDepth++;
          let cond: number;
          try {
            cond = await this.list(c.cond, rio);
          } finally {
            this.conditionDepth--;
          }
          if (c.until ? cond === 0 : cond !== 0) return st;
          const sleepsBefore = this.sleeps;
          st = await this.list(c.body, rio);
          // A loop that never sleeps spins like a real busy loop, but must still let the rest of the process run.
          if (this.sleeps === sleepsBefore) await new Promise<void>((r) => setImmediate(r));
        }
      }
      case 'for': {
        const items = c.items ? (await Promise.all(c.items.map((w) => this.expandWord(w)))).flat() : this.positional.slice(1);
        let st = 0;
        for (const v of items) {
          this.vars[c.name] = v;
          st = await this.list(c.body, rio);
        }
        return st;
      }
    }
  }

  private async applyRedirects(redirs: Redirect[], io: Io): Promise<Io | number> {
    if (!redirs.length) return io;
    let { out, err, stdin } = io;
    const files = this.files;
    for (const r of redirs) {
      const target = (await this.expandWord(r.target)).join(' ');
      if (r.op === '>&') {
        const sink = target === '1' ? out : target === '2' ? err : undefined;
        if (!sink) {
          io.err(`${this.name}: ${target}: bad file descriptor\n`);
          return 1;
        }
        if (r.fd === 1) out = sink;
        else if (r.fd === 2) err = sink;
        continue;
      }
      if (r.op === '<') {
        if (target === '/dev/null') stdin = '';
        else if (this.readFile(target) !== undefined) stdin = this.readFile(target)!;
        else {
          io.err(`${this.name}: can't open '${target}': No such file or directory\n`);
          return 1;
        }
        continue;
      }
      let sink: (t: string) => void;
      if (target === '/dev/null') sink = () => {};
      else if (target === '/dev/stdout') sink = io.out;
      else if (target === '/dev/stderr') sink = io.err;
      else {
        if (r.op === '>' || !files.has(target)) files.set(target, '');
        sink = (t) => files.set(target, (files.get(target) ?? '') + t);
      }
      if (r.fd === 1) out = sink;
      else if (r.fd === 2) err = sink;
    }
    return { out, err, stdin };
  }

  private async simple(c: Extract<Command, { t: 'simple' }>, io: Io): Promise<number> {
    const argv: string[] = [];
    for (const w of c.words) argv.push(...(await this.expandWord(w)));
    const values: [string, string][] = [];
    for (const a of c.assigns) values.push([a.name, (await this.expandWord(a.value, true)).join(' ')]);
    if (!argv.length) {
      for (const [k, v] of values) this.vars[k] = v;
      return (this.status = 0);
    }
    // Prefix assignments (`VAR=x cmd`) only reach that command's environment.
    const saved: [string, string | undefined][] = values.map(([k]) => [k, this.vars[k]]);
    for (const [k, v] of values) this.vars[k] = v;
    try {
      return (this.status = await this.invoke(argv, io));
    } finally {
      for (const [k, v] of saved) {
        if (v === undefined) delete this.vars[k];
        else this.vars[k] = v;
      }
    }
  }

  private lookupVar(name: string): string | undefined {
    if (name === '?') return String(this.status);
    if (name === '$') return '1';
    if (name === '!') return '';
    if (name === '#') return String(Math.max(0, this.positional.length - 1));
    if (name === '@' || name === '*') return this.positional.slice(1).join(' ');
    if (/^\d$/.test(name)) return name === '0' ? (this.positional[0] ?? this.name) : this.positional[Number(name)];
    return this.vars[name];
  }

  /** Expands a word to fields: unquoted expansions are split on whitespace, quoted ones are kept whole. */
  async expandWord(w: Word, noSplit = false): Promise<string[]> {
    const fields: string[] = [];
    let cur = '';
    let has = false;
    const appendSplit = (text: string) => {
      const pieces = text.split(/[ \t\n]+/);
      for (let i = 0; i < pieces.length; i++) {
        if (i > 0) {
          if (has || cur) fields.push(cur);
          cur = '';
          has = false;
        }
        if (pieces[i]) {
          cur += pieces[i];
          has = true;
        }
      }
    };
    for (const p of w.parts) {
      let text: string;
      if (p.k === 'lit') {
        cur += p.text;
        has = true;
        continue;
      }
      if (p.k === 'var') {
        const v = this.lookupVar(p.name);
        if (p.op === ':-') text = v ? v : p.arg ? (await this.expandWord(p.arg, true)).join(' ') : '';
        else if (p.op === '-') text = v !== undefined ? v : p.arg ? (await this.expandWord(p.arg, true)).join(' ') : '';
        else if (p.op === ':+') text = v ? (p.arg ? (await this.expandWord(p.arg, true)).join(' ') : '') : '';
        else if (p.op === '+') text = v !== undefined ? (p.arg ? (await this.expandWord(p.arg, true)).join(' ') : '') : '';
        else text = v ?? '';
      } else {
        let captured = '';
        const sub = new Shell({ clock: this.clock, signal: this.signal, env: this.vars, commands: this.commands, name: this.name, positional: this.positional, readMounted: this.readMounted });
        for (const [k, v] of this.files) sub.files.set(k, v);
        this.status = await sub.run(p.script, { out: (t) => (captured += t), err: () => {}, stdin: '' });
        text = captured.replace(/\n+$/, '');
      }
      if (p.quoted || noSplit) {
        cur += text;
        has = true;
      } else appendSplit(text);
    }
    if (has || cur) fields.push(cur);
    return fields;
  }

  private async invoke(argv: string[], io: Io): Promise<number> {
    this.checkKilled();
    const [cmd, ...args] = argv;
    const base = cmd.includes('/') ? cmd.slice(cmd.lastIndexOf('/') + 1) : cmd;
    const known = cmd.includes('/') ? /^\/(usr\/)?(local\/)?s?bin\/[^/]+$/.test(cmd) : true;
    if (known) {
      switch (base) {
        case 'true':
        case ':':
          return 0;
        case 'false':
          return 1;
        case 'echo':
          return this.echo(args, io);
        case 'printf':
          return this.printf(args, io);
        case 'sleep':
          return this.sleep(args, io);
        case 'exit': {
          const code = args.length ? Number(args[0]) : this.status;
          throw new ExitSignal(Number.isFinite(code) ? code & 255 : 2);
        }
        case 'test':
          return this.test(args, io);
        case '[':
          if (args[args.length - 1] !== ']') {
            io.err(`${this.name}: missing ]\n`);
            return 2;
          }
          return this.test(args.slice(0, -1), io);
        case 'cat':
          return this.cat(args, io);
        case 'head':
          return this.head(args, io);
        case 'grep':
          return this.grep(args, io);
        case 'wc':
          return this.wc(args, io);
        case 'cut':
          return this.cut(args, io);
        case 'printenv':
          if (!args.length) {
            for (const [k, v] of Object.entries(this.vars)) io.out(`${k}=${v}\n`);
            return 0;
          }
          for (const a of args) if (this.vars[a] !== undefined) io.out(`${this.vars[a]}\n`);
          return args.every((a) => this.vars[a] !== undefined) ? 0 : 1;
        case 'export':
          for (const a of args) {
            const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(a);
            if (m) this.vars[m[1]] = m[2];
          }
          return 0;
        case 'set':
          for (const a of args) {
            if (a === '-e') this.errexit = true;
            else if (a === '+e') this.errexit = false;
            else if (!/^[-+][xuo]$|^pipefail$/.test(a)) {
              io.err(`${this.name}: set: illegal option ${a}\n`);
              return 2;
            }
          }
          return 0;
        default: {
          const ext = this.commands[base];
          if (ext) return ext(argv, io, this);
        }
      }
    }
    io.err(`${this.name}: ${cmd}: not found\n`);
    return 127;
  }

  private echo(args: string[], io: Io): number {
    let newline = true;
    while (args[0] === '-n' || args[0] === '-e' || args[0] === '-ne' || args[0] === '-en') {
      if (args[0].includes('n')) newline = false;
      args = args.slice(1);
    }
    io.out(args.join(' ') + (newline ? '\n' : ''));
    return 0;
  }

  private printf(args: string[], io: Io): number {
    if (!args.length) {
      io.err('printf: usage: printf FORMAT [ARGUMENT]...\n');
      return 2;
    }
    const [fmt, ...rest] = args;
    let i = 0;
    do {
      const text = fmt
        .replace(/\\n/g, '\n')
        .replace(/\\t/g, '\t')
        .replace(/%([sd%])/g, (_m, f) => (f === '%' ? '%' : f === 'd' ? String(Number(rest[i++] ?? 0) | 0) : (rest[i++] ?? '')));
      io.out(text);
    } while (i < rest.length && /%[sd]/.test(fmt));
    return 0;
  }

  private async sleep(args: string[], io: Io): Promise<number> {
    if (!args.length) {
      io.err('sleep: missing operand\n');
      return 1;
    }
    let total = 0;
    for (const a of args) {
      if (a === 'infinity') total = Infinity;
      const m = /^(\d+(?:\.\d+)?|\.\d+)([smhd]?)$/.exec(a);
      if (!m && a !== 'infinity') {
        io.err(`sleep: invalid number '${a}'\n`);
        return 1;
      }
      if (m) total += Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[m[2]];
    }
    this.sleeps++;
    try {
      if (total === Infinity) await new Promise<void>((_r, rej) => this.signal.addEventListener('abort', () => rej(this.signal.reason), { once: true }));
      else await this.clock.sleep(total * 1000, this.signal);
    } catch {
      throw new ExitSignal(137);
    }
    return 0;
  }

  private test(args: string[], io: Io): number {
    const ev = (a: string[]): boolean => {
      if (a[0] === '!') return !ev(a.slice(1));
      const oi = a.findIndex((x, i) => i > 0 && (x === '-a' || x === '-o'));
      if (oi > 0) return a[oi] === '-a' ? ev(a.slice(0, oi)) && ev(a.slice(oi + 1)) : ev(a.slice(0, oi)) || ev(a.slice(oi + 1));
      if (a.length === 0) return false;
      if (a.length === 1) return a[0] !== '';
      if (a.length === 2) {
        if (a[0] === '-z') return a[1] === '';
        if (a[0] === '-n') return a[1] !== '';
        if (a[0] === '-f' || a[0] === '-e' || a[0] === '-s') return this.readFile(a[1]) !== undefined && (a[0] !== '-s' || this.readFile(a[1])!.length > 0);
        throw new Error(`${a[0]}: unary operator expected`);
      }
      if (a.length === 3) {
        const [l, op, r] = a;
        switch (op) {
          case '=':
          case '==':
            return l === r;
          case '!=':
            return l !== r;
          case '-eq':
          case '-ne':
          case '-lt':
          case '-le':
          case '-gt':
          case '-ge': {
            const x = Number(l);
            const y = Number(r);
            if (!/^-?\d+$/.test(l.trim()) || !/^-?\d+$/.test(r.trim())) throw new Error(`${!/^-?\d+$/.test(l.trim()) ? l : r}: bad number`);
            return { '-eq': x === y, '-ne': x !== y, '-lt': x < y, '-le': x <= y, '-gt': x > y, '-ge': x >= y }[op]!;
          }
        }
      }
      throw new Error(`${a[1] ?? a[0]}: unknown operand`);
    };
    try {
      return ev(args) ? 0 : 1;
    } catch (e) {
      io.err(`${this.name}: test: ${(e as Error).message}\n`);
      return 2;
    }
  }

  private readInputs(files: string[], io: Io): string | number {
    if (!files.length || (files.length === 1 && files[0] === '-')) return io.stdin;
    let text = '';
    for (const f of files) {
      const content = this.readFile(f);
      if (content === undefined) {
        io.err(`cat: can't open '${f}': No such file or directory\n`);
        return 1;
      }
      text += content;
    }
    return text;
  }

  private cat(args: string[], io: Io): number {
    const t = this.readInputs(args, io);
    if (typeof t === 'number') return t;
    io.out(t);
    return 0;
  }

  private head(args: string[], io: Io): number {
    let lines = 10;
    let bytes: number | undefined;
    const files: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a === '-n') lines = Number(args[++i]);
      else if (a === '-c') bytes = Number(args[++i]);
      else if (/^-n\d+$/.test(a)) lines = Number(a.slice(2));
      else if (/^-c\d+$/.test(a)) bytes = Number(a.slice(2));
      else if (/^-\d+$/.test(a)) lines = Number(a.slice(1));
      else files.push(a);
    }
    const t = this.readInputs(files, io);
    if (typeof t === 'number') return t;
    if (bytes !== undefined) io.out(t.slice(0, bytes));
    else {
      const parts = t.split('\n');
      const keep = parts.slice(0, lines);
      io.out(keep.join('\n') + (parts.length > lines ? '\n' : ''));
    }
    return 0;
  }

  private grep(args: string[], io: Io): number {
    let quiet = false;
    let invert = false;
    let ignoreCase = false;
    let count = false;
    let fixed = false;
    let pattern: string | undefined;
    const files: string[] = [];
    for (const a of args) {
      if (pattern === undefined && /^-[qvicFEs]+$/.test(a)) {
        for (const f of a.slice(1)) {
          if (f === 'q') quiet = true;
          if (f === 'v') invert = true;
          if (f === 'i') ignoreCase = true;
          if (f === 'c') count = true;
          if (f === 'F') fixed = true;
        }
      } else if (pattern === undefined) pattern = a;
      else files.push(a);
    }
    if (pattern === undefined) {
      io.err('grep: no pattern\n');
      return 2;
    }
    const t = this.readInputs(files, io);
    if (typeof t === 'number') return 2;
    const re = new RegExp(fixed ? pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : pattern, ignoreCase ? 'i' : '');
    const lines = t.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    const hits = lines.filter((l) => re.test(l) !== invert);
    if (!quiet) {
      if (count) io.out(`${hits.length}\n`);
      else for (const h of hits) io.out(h + '\n');
    }
    return hits.length ? 0 : 1;
  }

  /** `cut -d DELIM -f LIST [-s] [FILE...]` and `cut -c LIST`, as BusyBox and GNU cut behave. */
  private cut(args: string[], io: Io): number {
    let delim = '\t';
    let fields: string | undefined;
    let chars: string | undefined;
    let onlyDelimited = false;
    const files: string[] = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a === '-d') delim = args[++i] ?? '';
      else if (a.startsWith('-d')) delim = a.slice(2);
      else if (a === '-f') fields = args[++i];
      else if (a.startsWith('-f')) fields = a.slice(2);
      else if (a === '-c' || a === '-b') chars = args[++i];
      else if (a.startsWith('-c') || a.startsWith('-b')) chars = a.slice(2);
      else if (a === '-s') onlyDelimited = true;
      else files.push(a);
    }
    const list = fields ?? chars;
    if (list === undefined || (fields !== undefined && delim.length !== 1)) {
      io.err(fields !== undefined ? 'cut: the delimiter must be a single character\n' : 'cut: you must specify a list of bytes, characters, or fields\n');
      return 1;
    }
    const ranges: [number, number][] = [];
    for (const part of list.split(',')) {
      const m = /^(\d*)(-?)(\d*)$/.exec(part);
      if (!m || (!m[1] && !m[3]) || m[1] === '0') {
        io.err(`cut: invalid field value '${part}'\n`);
        return 1;
      }
      const from = m[1] ? Number(m[1]) : 1;
      const to = m[2] ? (m[3] ? Number(m[3]) : Infinity) : from;
      ranges.push([from, to]);
    }
    const keep = (n: number) => ranges.some(([a, b]) => n >= a && n <= b);
    const t = this.readInputs(files, io);
    if (typeof t === 'number') return t;
    const lines = t.endsWith('\n') ? t.slice(0, -1).split('\n') : t === '' ? [] : t.split('\n');
    for (const line of lines) {
      if (chars !== undefined) {
        io.out([...line].filter((_, i) => keep(i + 1)).join('') + '\n');
        continue;
      }
      if (!line.includes(delim)) {
        if (!onlyDelimited) io.out(line + '\n');
        continue;
      }
      io.out(line.split(delim).filter((_, i) => keep(i + 1)).join(delim) + '\n');
    }
    return 0;
  }

  private wc(args: string[], io: Io): number {
    const flags = args.filter((a) => a.startsWith('-')).join('');
    const t = this.readInputs(args.filter((a) => !a.startsWith('-')), io);
    if (typeof t === 'number') return t;
    const l = (t.match(/\n/g) ?? []).length;
    const w = t.split(/\s+/).filter(Boolean).length;
    const c = Buffer.byteLength(t);
    if (flags.includes('l')) io.out(`${l}\n`);
    else if (flags.includes('w')) io.out(`${w}\n`);
    else if (flags.includes('c')) io.out(`${c}\n`);
    else io.out(`${String(l).padStart(7)} ${String(w).padStart(7)} ${String(c).padStart(7)}\n`);
    return 0;
  }
}
