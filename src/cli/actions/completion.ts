/**
 * `completion bash|zsh|fish`: a completion script generated from the registered commands and
 * flags themselves (so it cannot drift from them), with the values the tool knows: step ids
 * for `--step`/`--to`, the `-o` formats, `--cloud` names, `--dry-run` modes, drain strategies;
 * files and directories for path flags.
 */
import type { Command, Option } from 'commander';
import { UsageError } from '../../engine/errors.ts';
import { isRunbookId, STEP_IDS, stepIdsOf } from '../../engine/step.ts';
import { DRAIN_STRATEGIES } from '../commands/apply.ts';
import { COMPLETION_SHELLS } from '../commands/completion.ts';
import type { CliEnv } from '../main.ts';

/** What a flag's value completes to. */
type ValueKind = { words: string[] } | 'file' | 'dir' | 'free';

interface FlagSpec {
  short?: string;
  long?: string;
  description: string;
  value?: ValueKind;
}

interface CommandSpec {
  name: string;
  description: string;
  flags: FlagSpec[];
  /** Words completing the first positional argument. */
  argWords: string[];
  subcommands: CommandSpec[];
}

const FILE_FLAGS = new Set(['--kubeconfig', '--inventory', '--journal', '--plan', '--junit', '--scenario', '--out']);
const DIR_FLAGS = new Set(['--dir']);
const VALUE_WORDS: Record<string, readonly string[]> = {
  '--step': STEP_IDS,
  '--to': STEP_IDS,
  '--dry-run': ['client', 'server'],
  '--drain-strategy': DRAIN_STRATEGIES,
};

function flagSpec(option: Option): FlagSpec {
  const takesValue = option.required || option.optional;
  let value: ValueKind | undefined;
  if (takesValue) {
    const long = option.long ?? '';
    if (option.argChoices) value = { words: [...option.argChoices] };
    else if (VALUE_WORDS[long]) value = { words: [...VALUE_WORDS[long]] };
    else if (FILE_FLAGS.has(long)) value = 'file';
    else if (DIR_FLAGS.has(long)) value = 'dir';
    else value = 'free';
  }
  return { short: option.short, long: option.long, description: option.description, value };
}

function commandSpec(cmd: Command): CommandSpec {
  const args = cmd.registeredArguments;
  const argWords = cmd.name() === 'completion' ? [...COMPLETION_SHELLS] : args[0]?.argChoices ? [...args[0].argChoices] : [];
  return {
    name: cmd.name(),
    description: cmd.description(),
    flags: [...cmd.options.map(flagSpec), { long: '--help', short: '-h', description: 'display help for command' }],
    argWords,
    subcommands: cmd.commands.map(commandSpec),
  };
}

const names = (f: FlagSpec) => [f.short, f.long].filter((n): n is string => Boolean(n));
const valueFlags = (flags: FlagSpec[]) => flags.filter((f) => f.value).flatMap(names);

/** The bash script: `complete -F` with a function that knows which words take a value. */
export function bashCompletion(root: CommandSpec, bin: string): string {
  const fn = `_${bin.replace(/[^A-Za-z0-9]/g, '_')}_complete`;
  const all = [root, ...root.subcommands, ...root.subcommands.flatMap((c) => c.subcommands)];
  const valueCases = new Map<string, string>();
  for (const c of all) {
    for (const f of c.flags) {
      if (!f.value) continue;
      const action =
        f.value === 'file' ? 'COMPREPLY=($(compgen -f -- "$cur"))' : f.value === 'dir' ? 'COMPREPLY=($(compgen -d -- "$cur"))' : f.value === 'free' ? 'COMPREPLY=()' : `COMPREPLY=($(compgen -W "${f.value.words.join(' ')}" -- "$cur"))`;
      for (const n of names(f)) valueCases.set(n, action);
    }
  }
  const byAction = new Map<string, string[]>();
  for (const [flag, action] of valueCases) byAction.set(action, [...(byAction.get(action) ?? []), flag]);
  const lines: string[] = [];
  lines.push(`# bash completion for ${bin}: source <(${bin} completion bash)`);
  lines.push(`${fn}() {`);
  lines.push('  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"');
  lines.push('  local cmd="" sub="" i word');
  lines.push(`  local takes_value=" ${[...new Set(all.flatMap((c) => valueFlags(c.flags)))].join(' ')} "`);
  lines.push('  for ((i = 1; i < COMP_CWORD; i++)); do');
  lines.push('    word="${COMP_WORDS[i]}"');
  lines.push('    if [[ "$takes_value" == *" $word "* ]]; then ((i++)); continue; fi');
  lines.push('    [[ "$word" == -* ]] && continue');
  lines.push('    if [[ -z "$cmd" ]]; then cmd="$word"; elif [[ -z "$sub" ]]; then sub="$word"; fi');
  lines.push('  done');
  lines.push('  case "$prev" in');
  for (const [action, flags] of byAction) lines.push(`    ${flags.join('|')}) ${action}; return 0 ;;`);
  lines.push('  esac');
  lines.push(`  local globals="${root.flags.flatMap(names).join(' ')}"`);
  lines.push('  local words');
  lines.push('  case "$cmd" in');
  lines.push(`    "") words="${root.subcommands.map((c) => c.name).join(' ')}" ;;`);
  for (const c of root.subcommands) {
    const flagWords = c.flags.flatMap(names).join(' ');
    if (c.subcommands.length > 0) {
      lines.push(`    ${c.name})`);
      lines.push('      case "$sub" in');
      lines.push(`        "") words="${c.subcommands.map((s) => s.name).join(' ')} ${flagWords}" ;;`);
      for (const s of c.subcommands) lines.push(`        ${s.name}) words="${s.flags.flatMap(names).join(' ')}" ;;`);
      lines.push('      esac ;;');
    } else {
      lines.push(`    ${c.name}) words="${[...(cur0(c) ? c.argWords : []), flagWords].join(' ')}" ;;`);
    }
  }
  lines.push('  esac');
  lines.push('  [[ "$cur" == -* ]] && words="$words $globals"');
  lines.push('  COMPREPLY=($(compgen -W "$words" -- "$cur"))');
  lines.push('}');
  lines.push(`complete -o default -F ${fn} ${bin}`);
  return `${lines.join('\n')}\n`;
}

/** Positional words are offered only while no positional argument has been given yet. */
function cur0(c: CommandSpec): boolean {
  return c.argWords.length > 0;
}

const zshEscape = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, "'\\''").replace(/\[/g, '\\[').replace(/\]/g, '\\]').replace(/:/g, '\\:');

function zshFlag(f: FlagSpec): string {
  const value = !f.value ? '' : f.value === 'file' ? ':file:_files' : f.value === 'dir' ? ':directory:_files -/' : f.value === 'free' ? ':value: ' : `:value:(${f.value.words.join(' ')})`;
  const desc = `[${zshEscape(f.description)}]`;
  if (f.short && f.long) return `'(${f.short} ${f.long})'{${f.short},${f.long}}'${desc}${value}'`;
  return `'${names(f)[0]}${desc}${value}'`;
}

/** The zsh script: `_arguments` per command, `_describe` for command names. */
export function zshCompletion(root: CommandSpec, bin: string): string {
  const fn = `_${bin.replace(/[^A-Za-z0-9]/g, '_')}`;
  const describe = (cs: CommandSpec[]) => cs.map((c) => `'${zshEscape(c.name)}:${zshEscape(c.description).replace(/\\:/g, ' -')}'`).join(' ');
  const globals = root.flags.map(zshFlag).join(' ');
  const lines: string[] = [`#compdef ${bin}`, `# zsh completion for ${bin}: ${bin} completion zsh > "\${fpath[1]}/_${bin}"`, `${fn}() {`];
  lines.push('  local curcontext="$curcontext" state line ret=1');
  lines.push(`  local -a globals; globals=(${globals})`);
  lines.push("  _arguments -C $globals '1: :->command' '*:: :->args' && ret=0");
  lines.push('  case $state in');
  lines.push(`    command) local -a commands; commands=(${describe(root.subcommands)}); _describe command commands && ret=0 ;;`);
  lines.push('    args)');
  lines.push('      case $line[1] in');
  for (const c of root.subcommands) {
    const own = c.flags.map(zshFlag).join(' ');
    if (c.subcommands.length > 0) {
      lines.push(`        ${c.name})`);
      lines.push(`          _arguments -C $globals ${own} '1: :->sub' '*:: :->subargs' && ret=0`);
      lines.push('          case $state in');
      lines.push(`            sub) local -a subs; subs=(${describe(c.subcommands)}); _describe command subs && ret=0 ;;`);
      lines.push('            subargs)');
      lines.push('              case $line[1] in');
      for (const s of c.subcommands) lines.push(`                ${s.name}) _arguments $globals ${s.flags.map(zshFlag).join(' ')} && ret=0 ;;`);
      lines.push('              esac ;;');
      lines.push('          esac ;;');
    } else {
      const arg = c.argWords.length ? ` '1:${c.name === 'completion' ? 'shell' : 'value'}:(${c.argWords.join(' ')})'` : '';
      lines.push(`        ${c.name}) _arguments $globals ${own}${arg} && ret=0 ;;`);
    }
  }
  lines.push('      esac ;;');
  lines.push('  esac');
  lines.push('  return ret');
  lines.push('}');
  lines.push(`compdef ${fn} ${bin}`);
  return `${lines.join('\n')}\n`;
}

const fishEscape = (s: string) => s.replace(/\\/g, '\\\\').replace(/'/g, "\\'");

function fishFlag(bin: string, condition: string | undefined, f: FlagSpec): string {
  const parts = [`complete -c ${bin}`];
  if (condition) parts.push(`-n '${condition}'`);
  if (f.short) parts.push(`-s ${f.short.replace(/^-/, '')}`);
  if (f.long) parts.push(`-l ${f.long.replace(/^--/, '')}`);
  if (f.value === 'file') parts.push('-r -F');
  else if (f.value === 'dir') parts.push(`-x -a '(__fish_complete_directories)'`);
  else if (f.value === 'free') parts.push('-x');
  else if (f.value) parts.push(`-x -a '${f.value.words.join(' ')}'`);
  parts.push(`-d '${fishEscape(f.description)}'`);
  return parts.join(' ');
}

/** The fish script: one `complete` line per command and flag. */
export function fishCompletion(root: CommandSpec, bin: string): string {
  const lines = [`# fish completion for ${bin}: ${bin} completion fish > ~/.config/fish/completions/${bin}.fish`, `complete -c ${bin} -f`];
  for (const f of root.flags) lines.push(fishFlag(bin, undefined, f));
  for (const c of root.subcommands) {
    lines.push(`complete -c ${bin} -n '__fish_use_subcommand' -a ${c.name} -d '${fishEscape(c.description)}'`);
    const inCmd = `__fish_seen_subcommand_from ${c.name}`;
    for (const f of c.flags) if (f.long !== '--help') lines.push(fishFlag(bin, inCmd, f));
    if (c.argWords.length) lines.push(`complete -c ${bin} -n '${inCmd}' -a '${c.argWords.join(' ')}'`);
    if (c.subcommands.length) {
      const subNames = c.subcommands.map((s) => s.name).join(' ');
      for (const s of c.subcommands) {
        lines.push(`complete -c ${bin} -n '${inCmd}; and not __fish_seen_subcommand_from ${subNames}' -a ${s.name} -d '${fishEscape(s.description)}'`);
        for (const f of s.flags) if (f.long !== '--help') lines.push(fishFlag(bin, `${inCmd}; and __fish_seen_subcommand_from ${s.name}`, f));
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Candidates for the word being completed, and Cobra's directive for the shell. */
export interface Completion {
  candidates: string[];
  /** Cobra ShellCompDirective: 0 default (files), 4 no file completion, 16 directories only. */
  directive: number;
}

const NO_FILES = 4;
const DIRECTORIES = 16;

/**
 * Completes the last of `words` (the arguments after the program name, the last one possibly
 * empty) the way the bash script does: flag values, then flags, sub-commands or arguments.
 */
export function completeWords(root: CommandSpec, words: readonly string[]): Completion {
  const cur = words.at(-1) ?? '';
  const before = words.slice(0, -1);
  const all = [root, ...root.subcommands, ...root.subcommands.flatMap((c) => c.subcommands)];
  const flagOf = (name: string) => all.flatMap((c) => c.flags).find((f) => names(f).includes(name));
  let cmd: CommandSpec | undefined;
  let sub: CommandSpec | undefined;
  let positional = 0;
  for (let i = 0; i < before.length; i++) {
    const w = before[i];
    if (w.startsWith('-')) {
      if (!w.includes('=') && flagOf(w)?.value) i++;
      continue;
    }
    if (!cmd) cmd = root.subcommands.find((c) => c.name === w);
    else if (cmd.subcommands.length > 0 && !sub) sub = cmd.subcommands.find((c) => c.name === w);
    else positional++;
  }
  const prev = before.at(-1);
  const valueFlag = prev && prev.startsWith('-') && !prev.includes('=') ? flagOf(prev) : undefined;
  const match = (candidates: readonly string[], directive = NO_FILES): Completion => ({ candidates: candidates.filter((c) => c.startsWith(cur)), directive });
  if (valueFlag?.value) {
    const v = valueFlag.value;
    // Step ids are those of the runbook the words name (`--runbook workload-identity`), else the default's.
    if (prev === '--step' || prev === '--to') {
      const at = before.lastIndexOf('--runbook');
      const given = at >= 0 ? before[at + 1] : before.find((w) => w.startsWith('--runbook='))?.slice('--runbook='.length);
      if (isRunbookId(given)) return match(stepIdsOf(given));
    }
    if (v === 'file') return { candidates: [], directive: 0 };
    if (v === 'dir') return { candidates: [], directive: DIRECTORIES };
    if (v === 'free') return { candidates: [], directive: NO_FILES };
    return match(v.words);
  }
  const here = sub ?? cmd;
  if (cur.startsWith('-')) return match([...(here ? here.flags.flatMap(names) : []), ...root.flags.flatMap(names)]);
  if (!cmd) return match(root.subcommands.map((c) => c.name));
  if (cmd.subcommands.length > 0 && !sub) return match(cmd.subcommands.map((c) => c.name));
  return match(positional === 0 ? (here ?? cmd).argWords : []);
}

/** Cobra's `__complete` output: one candidate per line, then `:<directive>`. */
export function formatCompletion(c: Completion): string {
  return `${[...c.candidates, `:${c.directive}`].join('\n')}\n`;
}

/** The command tree of `program` as completion needs it (`help` included, as commander adds it). */
export function completionModel(program: Command): CommandSpec {
  const spec = commandSpec(program);
  spec.subcommands.push({ name: 'help', description: 'display help for command', flags: [], argWords: program.commands.map((c) => c.name()), subcommands: [] });
  return spec;
}

/** `completion <shell>`: the script on stdout. */
export async function run(env: CliEnv, shell: string, _opts: unknown, cmd: Command): Promise<void> {
  if (!(COMPLETION_SHELLS as readonly string[]).includes(shell)) {
    throw new UsageError(`completion: "${shell}" is not a supported shell.`, `Use one of: ${COMPLETION_SHELLS.join(', ')}.`);
  }
  const model = completionModel(cmd.parent!);
  // Completion is for the executable on PATH; `kubectl podid-migrate` completes through it too.
  const bin = 'podid-migrate';
  env.out(shell === 'bash' ? bashCompletion(model, bin) : shell === 'zsh' ? zshCompletion(model, bin) : fishCompletion(model, bin));
}
