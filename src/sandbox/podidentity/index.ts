/**
 * AAD Pod Identity in the sandbox: MIC and NMI as container programs the kubelet runs, IMDS
 * per VM, and the outage meter.
 *
 * Wiring: call {@link startImds} once, {@link registerPodIdentityPrograms} on the kubelet's
 * {@link ProgramRegistry} before pods start, and start an {@link OutageMeter}. All of them
 * take the same {@link PodIdentityOptions}.
 */
import type { ProgramRegistry } from '../runtime.ts';
import type { PodIdentityOptions } from './common.ts';
import { isMicImage, micProgram } from './mic.ts';
import { isNmiImage, nmiProgram } from './nmi.ts';

export type { IdentityInfra, InfraIdentity, NmiNodeState, PodIdentityOptions, PodIdentityTiming } from './common.ts';
export { ASSIGNED_FINALIZER, BINDING_LABEL, DEFAULT_TIMING, nmiRegistry } from './common.ts';
export { decideImdsIdentity, startImds, tokenResourceId, type ImdsDecision, type ImdsHandle } from './imds.ts';
export { LEADER_ANNOTATION, micProgram, parseMicArgs, type LeaderElectionRecord, type MicConfig } from './mic.ts';
export { nmiProgram, parseNmiArgs, type NmiConfig } from './nmi.ts';
export { OutageMeter, PROBE_LABEL, type OutageReport, type PodVerdict } from './outage-meter.ts';

/**
 * Registers the MIC and NMI programs, matched by image (`.../aad-pod-identity/mic:<tag>`,
 * `.../aad-pod-identity/nmi:<tag>`). Register before the kubelet starts containers.
 */
export function registerPodIdentityPrograms(programs: ProgramRegistry, opts: PodIdentityOptions): void {
  programs.register('aad-pod-identity-nmi', (image) => isNmiImage(image), nmiProgram(opts));
  programs.register('aad-pod-identity-mic', (image) => isMicImage(image), micProgram(opts));
}
