/**
 * The work of `sandbox aks …` (registered in `src/cli/commands/sandbox-aks.ts`): each
 * sub-command calls the sandbox's control API (`POST /_sandbox/aks/<op>`) with the credentials
 * in the sandbox directory and waits for the operation to finish.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { PreconditionError, UsageError } from '../../engine/errors.ts';
import { controlRequest, DEFAULT_SANDBOX_DIR, SandboxError } from '../../sandbox/lifecycle.ts';
import type { AksOperation } from '../../sandbox/aks-operations.ts';
import type { CliEnv } from '../main.ts';
import { renderData } from '../render.ts';

/** Calls `POST /_sandbox/aks/<op>` of the sandbox whose client files are in `dir`. */
export async function callAksOperation(dir: string, op: AksOperation): Promise<unknown> {
  const abs = resolve(dir);
  const kubeconfig = join(abs, 'kubeconfig');
  const caFile = join(abs, 'ca.crt');
  if (!existsSync(kubeconfig) || !existsSync(caFile)) {
    throw new PreconditionError(`no running sandbox in ${abs} (no kubeconfig and ca.crt there).`, 'Start one with `podid-migrate sandbox up`, or pass --dir <the directory it was started with>.');
  }
  const kc = parseYaml(readFileSync(kubeconfig, 'utf8')) as { clusters?: { cluster?: { server?: string } }[] };
  const kubeUrl = kc.clusters?.[0]?.cluster?.server;
  if (!kubeUrl) throw new PreconditionError(`${kubeconfig} names no API server.`, 'Restart the sandbox: podid-migrate sandbox down && podid-migrate sandbox up');
  const { op: name, ...fields } = op;
  try {
    return await controlRequest(
      { status: 'ready', pid: 0, startedAt: '', kubeUrl, files: { dir: abs, kubeconfig, caFile, armTokenFile: join(abs, 'arm-token'), envFile: join(abs, 'env') } },
      'POST',
      `/_sandbox/aks/${name}`,
      fields,
    );
  } catch (e) {
    if (e instanceof SandboxError) {
      // The sandbox refused the request itself (unknown pool, bad name): say only why.
      const refused = / answered 400: (.*)$/s.exec(e.message);
      let reason: string | undefined;
      try {
        reason = refused ? (JSON.parse(refused[1]) as { error?: string }).error : undefined;
      } catch {
        reason = undefined;
      }
      if (reason) throw new UsageError(`sandbox aks ${name}: ${reason}.`, 'See the pools and identities with `kubectl get nodes -L kubernetes.azure.com/agentpool` and `podid-migrate sandbox status`.');
      throw new PreconditionError(e.message, e.hint);
    }
    throw e;
  }
}

function count(flag: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag}: "${raw}" is not a node count.`, `Give a whole number, e.g. ${flag} 2.`);
  return n;
}

function labels(raw: string[] | undefined): Record<string, string> | undefined {
  if (!raw?.length) return undefined;
  const out: Record<string, string> = {};
  for (const item of raw.flatMap((r) => r.split(','))) {
    const m = /^([^=\s]+)=([^=\s]*)$/.exec(item.trim());
    if (!m) throw new UsageError(`--labels: "${item}" is not key=value.`, 'e.g. --labels workload=batch,team=data');
    out[m[1]] = m[2];
  }
  return out;
}

/** Flags and arguments of one `sandbox aks` sub-command, as commander passes them. */
export interface AksFlags {
  count?: string;
  vmSize?: string;
  mode?: string;
  labels?: string[];
  nodeTaints?: string[];
  rewriteIdentities?: boolean;
  mic?: boolean;
  nmi?: boolean;
  dir: string;
}

/** Builds the operation from the sub-command's arguments (every value checked by name) and runs it. */
export async function run(env: CliEnv, name: AksOperation['op'], arg: string | undefined, o: AksFlags, cmd: Command): Promise<void> {
  let op: AksOperation;
  switch (name) {
    case 'add-pool':
      if (o.mode !== 'System' && o.mode !== 'User') throw new UsageError(`--mode: "${o.mode}" is not a pool mode.`, 'Use --mode System or --mode User.');
      op = { op: 'add-pool', name: arg!, count: count('--count', o.count ?? '2'), vmSize: o.vmSize!, mode: o.mode, labels: labels(o.labels), taints: o.nodeTaints };
      break;
    case 'upgrade-pool':
      op = { op: 'upgrade-pool', pool: arg!, rewriteIdentities: Boolean(o.rewriteIdentities) };
      break;
    case 'scale-pool':
      op = { op: 'scale-pool', pool: arg!, count: count('--count', o.count ?? '') };
      break;
    case 'recreate-identity':
      op = { op: 'recreate-identity', identity: arg! };
      break;
    default:
      op = { op: 'reinstall-standard', nmi: o.nmi !== false, mic: o.mic !== false };
  }
  const globals = env.globals(cmd);
  env.err(`sandbox: ${op.op} ...\n`);
  const answer = (await callAksOperation(o.dir, op)) as { result?: unknown };
  if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, answer));
  else env.out(`${op.op}: ${JSON.stringify(answer.result)}\n`);
}
