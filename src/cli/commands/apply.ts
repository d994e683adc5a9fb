import { lazyAction, type CommandModule } from './index.ts';

/** How `apply --drain-strategy` may replace a drained node. */
export const DRAIN_STRATEGIES = ['reimage', 'delete', 'none'];

/** `apply`: run pending steps in order, each followed by its check. */
export const applyCommand: CommandModule = {
  name: 'apply',
  register(program, env) {
    program
      .command('apply')
      .description('apply pending steps in order (each one checked before the next starts)')
      .option('--step <id>', 'apply only this step (every earlier step must be checked)')
      .option('--to <id>', 'apply every pending step up to and including this one')
      .option('--plan <file>', 'apply exactly a plan saved by `plan --out`; refused if the cluster has changed since')
      .option('-y, --yes', 'do not ask for confirmation')
      .option('--dry-run <mode>', 'client: no write call at all; server: Kubernetes writes with dryRun=All, Azure writes printed. No journal, no lock')
      .option('--drain-timeout <duration>', 'drain: how long evictions may be retried per node (default 5m)')
      .option('--drain-strategy <strategy>', 'drain: how the drained node is replaced: reimage, delete or none')
      .option('--delete-emptydir-data', 'drain and the NMI drain rollout: also evict pods with emptyDir volumes, whose data is lost (like kubectl drain)')
      .option('--parallel-pools <n>', 'drain: how many pools are drained at once, one node each (default: all)')
      .option('--drain-force', 'drain: also delete pods no controller will re-create (like kubectl drain --force)')
      .option('--nmi-rollout <strategy>', 'nmi-managed: drain (default: each node emptied of service pods before its NMI restarts) or in-place (rolling update of the DaemonSet)')
      .option('--nmi-max-unavailable <n|p%>', "nmi-managed: nodes whose NMI restarts at once (in-place: in the cluster; drain: per pool), like a DaemonSet's maxUnavailable (default 1)")
      .option('--test-timeout <duration>', "test: how long each test case may retry (default 80s, NMI's own wait)")
      .option('--delete-crd', 'cleanup: also delete the AzureAssignedIdentity CRD')
      .option('--uninstall-pod-identity', 'wi-remove-pod-identity (--runbook workload-identity): also delete NMI, MIC, the AzurePodIdentityExceptions and the Pod Identity CRDs (recorded in the journal: a resumed run keeps it)')
      .option('--upgrade-instances', 'assign: also manualupgrade scale set instances not on the latest model (off: an added identity needs no instance update, and an upgrade rolls out other pending model changes too)')
      .option('--junit <file>', 'test: write the test case results as JUnit XML')
      .action(lazyAction(env, () => import('../actions/apply.ts')));
  },
};
