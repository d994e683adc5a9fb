/**
 * Batch churn: the first seed's cluster ran short batch Jobs all day, each pod carrying an
 * `aadpodidbinding` label so that MIC assigned (and later garbage-collected) identities for
 * it. {@link startChurn} creates such a Job every `every` simulated seconds, its pod runs for
 * `jobDurationSeconds` (`sh -c "sleep N"` through the command emulator), and finished Jobs
 * beyond the newest `keep` are deleted (their pods follow through the garbage collector).
 *
 * Like a real batch system, it takes its pod template from its own configuration, which its
 * operator edits (no controller of the cluster owns these Jobs, so no migration tool can patch
 * them): the ConfigMap `<job name prefix>-pod-template` in the namespace, read at every Job,
 * with `data.labels` (a JSON object merged into the pod labels; `null` removes one) and
 * `data.serviceAccountName`. Without it the pods carry the `aadpodidbinding` label only.
 */
import type { Clock } from '../clock.ts';
import type { KObject, ObjectStore } from '../store.ts';
import { StoreError } from '../store.ts';
import { ignoreNotFound, requireType } from './util.ts';

export interface ChurnSpec {
  namespace: string;
  /** Simulated seconds between two Jobs. */
  every: number;
  /** The `aadpodidbinding` label value the Job's pods carry. */
  bindingSelector: string;
  nodeSelector?: Record<string, string>;
  /** How long each Job's pod runs. */
  jobDurationSeconds: number;
  /** Finished Jobs kept for inspection (default 3). */
  keep?: number;
}

export const CHURN_LABEL = 'sandbox.podid-migrate.io/churn';

/** Starts the churn; returns the function that stops it (Jobs already created stay). */
export function startChurn(store: ObjectStore, clock: Clock, spec: ChurnSpec): () => void {
  if (!(spec.every > 0)) throw new RangeError(`churn: every must be > 0 seconds, got ${spec.every}`);
  if (!(spec.jobDurationSeconds >= 0)) throw new RangeError(`churn: jobDurationSeconds must be >= 0, got ${spec.jobDurationSeconds}`);
  const jobType = requireType(store, 'batch', 'jobs');
  const configMapType = requireType(store, '', 'configmaps');
  const keep = spec.keep ?? 3;
  const label = `${spec.namespace}.${spec.bindingSelector}`.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  const base = `churn-${spec.bindingSelector}`.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 40).replace(/-+$/, '');

  const tick = () => {
    try {
      cleanup();
      create();
    } catch (e) {
      // A missing namespace (not created yet, or deleted) only skips this round.
      if (!(e instanceof StoreError)) throw e;
    }
  };

  /** The operator's pod template settings, read from the batch system's ConfigMap (absent or unreadable: none). */
  const podTemplate = (): { labels: Record<string, string | null>; serviceAccountName?: string } => {
    const cm = store.get(configMapType, spec.namespace, `${base}-pod-template`);
    const data = (cm?.data ?? {}) as Record<string, string>;
    let labels: Record<string, string | null> = {};
    try {
      const parsed = data.labels ? JSON.parse(data.labels) : {};
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) labels = parsed;
    } catch {
      // A batch system with a broken config keeps its last good behaviour: the plain template.
    }
    return { labels, ...(data.serviceAccountName ? { serviceAccountName: data.serviceAccountName } : {}) };
  };

  const create = () => {
    const settings = podTemplate();
    const podLabels: Record<string, string> = { aadpodidbinding: spec.bindingSelector, [CHURN_LABEL]: label };
    for (const [k, v] of Object.entries(settings.labels)) {
      if (k === CHURN_LABEL) continue;
      if (v === null) delete podLabels[k];
      else podLabels[k] = String(v);
    }
    const job: KObject = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { generateName: `${base}-`, namespace: spec.namespace, labels: { [CHURN_LABEL]: label } },
      spec: {
        backoffLimit: 0,
        completions: 1,
        parallelism: 1,
        template: {
          metadata: { labels: podLabels },
          spec: {
            ...(settings.serviceAccountName ? { serviceAccountName: settings.serviceAccountName } : {}),
            restartPolicy: 'Never',
            terminationGracePeriodSeconds: 5,
            ...(spec.nodeSelector ? { nodeSelector: { ...spec.nodeSelector } } : {}),
            containers: [{ name: 'batch', image: 'busybox:1.36', command: ['sh', '-c', `echo batch started; sleep ${spec.jobDurationSeconds}; echo batch done`] }],
          },
        },
      },
    };
    store.create(jobType, job);
  };

  const cleanup = () => {
    const done: Readonly<KObject>[] = [];
    for (const j of store.scan(jobType, { namespace: spec.namespace, labelSelector: `${CHURN_LABEL}=${label}` })) {
      if (j.metadata.deletionTimestamp) continue;
      const finished = (j.status?.conditions as any[] | undefined)?.some((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');
      if (finished) done.push(j);
    }
    done.sort((a, b) => (a.status?.completionTime ?? a.metadata.creationTimestamp ?? '').localeCompare(b.status?.completionTime ?? b.metadata.creationTimestamp ?? ''));
    for (const j of done.slice(0, Math.max(0, done.length - keep))) {
      ignoreNotFound(() => store.delete(jobType, j.metadata.namespace, j.metadata.name!, { preconditions: { uid: j.metadata.uid } }));
    }
  };

  tick();
  return clock.every(spec.every * 1000, tick);
}
