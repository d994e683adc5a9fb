/**
 * The self-subject reviews: SelfSubjectAccessReview (`kubectl auth can-i`),
 * SelfSubjectRulesReview (`kubectl auth can-i --list`) and SelfSubjectReview
 * (`kubectl auth whoami`). They are answered from the request's user and the RBAC
 * authorizer; nothing is stored.
 */
import type { HandlerResult, RequestInput } from './handlers.ts';
import { decodeBody } from './handlers.ts';
import type { RbacAuthorizer, UserInfo } from './rbac.ts';
import type { ResourceRoute } from './routes.ts';
import { badRequest } from './status.ts';

/** True for the types this module answers. */
export function isReviewType(route: ResourceRoute): boolean {
  const t = route.type;
  return (t.group === 'authorization.k8s.io' && (t.resource === 'selfsubjectaccessreviews' || t.resource === 'selfsubjectrulesreviews')) || (t.group === 'authentication.k8s.io' && t.resource === 'selfsubjectreviews');
}

function invalid(kind: string, field: string, message: string) {
  return Object.assign(badRequest(`${kind} is invalid: ${field}: ${message}`), {});
}

/** Answers a POST of one of the review kinds. */
export function answerReview(route: ResourceRoute, input: RequestInput, user: UserInfo, rbac: RbacAuthorizer): HandlerResult {
  const body = decodeBody(input) ?? {};
  const apiVersion = `${route.type.group}/${route.type.version}`;
  const metadata = { creationTimestamp: null };
  switch (route.type.resource) {
    case 'selfsubjectreviews':
      return { status: 201, body: { kind: 'SelfSubjectReview', apiVersion, metadata, status: { userInfo: { username: user.username, ...(user.uid ? { uid: user.uid } : {}), groups: user.groups } } } };
    case 'selfsubjectrulesreviews': {
      const namespace = body.spec?.namespace;
      if (!namespace) throw invalid('SelfSubjectRulesReview', 'spec.namespace', 'Required value');
      const rules = rbac.rulesFor(user, namespace);
      return { status: 201, body: { kind: 'SelfSubjectRulesReview', apiVersion, metadata, spec: { namespace }, status: { ...rules, incomplete: false } } };
    }
    default: {
      const spec = body.spec ?? {};
      const ra = spec.resourceAttributes;
      const nra = spec.nonResourceAttributes;
      if (!ra && !nra) throw invalid('SelfSubjectAccessReview', 'spec.resourceAttributes', 'Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified');
      const decision = ra
        ? rbac.authorize(user, { verb: ra.verb ?? '', group: ra.group ?? '', resource: ra.resource ?? '', subresource: ra.subresource || undefined, namespace: ra.namespace || undefined, name: ra.name || undefined })
        : rbac.authorizeNonResource(user, { verb: nra.verb ?? '', path: nra.path ?? '' });
      const status: Record<string, unknown> = { allowed: decision.allowed };
      if (decision.reason) status.reason = decision.reason;
      return { status: 201, body: { kind: 'SelfSubjectAccessReview', apiVersion, metadata, spec, status } };
    }
  }
}
