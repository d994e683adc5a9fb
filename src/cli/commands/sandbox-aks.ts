/**
 * `sandbox aks add-pool|upgrade-pool|scale-pool|recreate-identity|reinstall-standard`: what
 * AKS does to node pools and identities, on a running sandbox, to rehearse day two (what
 * `podid-migrate drift` finds). Each sub-command calls the sandbox's control API
 * (`POST /_sandbox/aks/<op>`) with the credentials in the sandbox directory and waits for the
 * operation to finish.
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

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Registers `sandbox aks …` under the `sandbox` command. */
export function registerSandboxAks(sandbox: Command, env: CliEnv): void {
  const aks = sandbox.command('aks').description('what AKS does to node pools and identities, on a running sandbox (to rehearse `podid-migrate drift`)');
  const dirDefault = env.deps.env.PODID_MIGRATE_SANDBOX_DIR || DEFAULT_SANDBOX_DIR;
  const run = async (cmd: Command, dir: string, op: AksOperation) => {
    const globals = env.globals(cmd);
    env.err(`sandbox: ${op.op} ...\n`);
    const answer = (await callAksOperation(dir, op)) as { result?: unknown };
    if (globals.output === 'json' || globals.output === 'yaml') env.out(renderData(globals.output, answer));
    else env.out(`${op.op}: ${JSON.stringify(answer.result)}\n`);
  };

  aks
    .command('add-pool <name>')
    .description('add a node pool: a new VMSS and nodes carrying only the kubelet identity (az aks nodepool add)')
    .option('--count <n>', 'nodes', '2')
    .option('--vm-size <size>', 'VM size', 'Standard_D4s_v5')
    .option('--mode <mode>', 'System or User', 'User')
    .option('--labels <k=v,...>', 'node labels (repeatable)', collect)
    .option('--node-taints <key=value:Effect>', 'node taint (repeatable)', collect)
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(async (name: string, o: { count: string; vmSize: string; mode: string; labels?: string[]; nodeTaints?: string[]; dir: string }, cmd: Command) => {
      if (o.mode !== 'System' && o.mode !== 'User') throw new UsageError(`--mode: "${o.mode}" is not a pool mode.`, 'Use --mode System or --mode User.');
      await run(cmd, o.dir, { op: 'add-pool', name, count: count('--count', o.count), vmSize: o.vmSize, mode: o.mode, labels: labels(o.labels), taints: o.nodeTaints });
    });

  aks
    .command('upgrade-pool <pool>')
    .description('upgrade a pool node by node (az aks nodepool upgrade); --rewrite-identities drops the pod identities from its VMSS as seen in Azure/AKS#1650')
    .option('--rewrite-identities', 'leave only the kubelet and add-on identities on the VMSS')
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(async (pool: string, o: { rewriteIdentities?: boolean; dir: string }, cmd: Command) => {
      await run(cmd, o.dir, { op: 'upgrade-pool', pool, rewriteIdentities: Boolean(o.rewriteIdentities) });
    });

  aks
    .command('scale-pool <pool>')
    .description('scale a pool (az aks nodepool scale)')
    .requiredOption('--count <n>', 'nodes')
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(async (pool: string, o: { count: string; dir: string }, cmd: Command) => {
      await run(cmd, o.dir, { op: 'scale-pool', pool, count: count('--count', o.count) });
    });

  aks
    .command('recreate-identity <name>')
    .description('delete a user-assigned identity and create it again under the same name: new client and principal ids, same resource id')
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(async (name: string, o: { dir: string }, cmd: Command) => {
      await run(cmd, o.dir, { op: 'recreate-identity', identity: name });
    });

  aks
    .command('reinstall-standard')
    .description('a helm upgrade with the old standard-mode values: NMI back to standard mode and MIC back')
    .option('--no-mic', 'leave MIC out (only NMI is reverted)')
    .option('--no-nmi', 'leave NMI as it is (only MIC comes back)')
    .option('--dir <dir>', 'the sandbox directory', dirDefault)
    .action(async (o: { mic: boolean; nmi: boolean; dir: string }, cmd: Command) => {
      await run(cmd, o.dir, { op: 'reinstall-standard', nmi: o.nmi, mic: o.mic });
    });
}
