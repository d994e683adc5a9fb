/** How the Azure gateway classifies SDK failures: environment errors get their own types and fixes. */
import { describe, expect, it } from 'vitest';
import { RestError } from '@azure/core-rest-pipeline';
import { toAzureError } from '../../src/azure/gateway.ts';
import { AzureApiError } from '../../src/azure/errors.ts';
import { AuthenticationError, EndpointUnreachableError, PermissionDeniedError, TlsTrustError } from '../../src/engine/errors.ts';

const EP = 'https://management.azure.com';
const rest = (status: number, code: string, message: string) => new RestError(message, { statusCode: status, code });

describe('toAzureError', () => {
  it('an LRO that ended Failed says so with the operation code and message, not the poll status', () => {
    const e = toAzureError(new Error('The long-running operation has failed. InternalOperationError. An internal execution error occurred.'), 'PATCH vmss aks-pay-1-vmss', EP) as AzureApiError;
    expect(e).toBeInstanceOf(AzureApiError);
    expect(e.operationFailed).toBe(true);
    expect(e.message).toBe('PATCH vmss aks-pay-1-vmss: the long-running operation ended Failed: InternalOperationError: An internal execution error occurred.');
  });

  it('401 is an AuthenticationError pointing at az login', () => {
    const e = toAzureError(Object.assign(rest(401, 'InvalidAuthenticationToken', 'The access token is invalid.'), { details: { error: { code: 'InvalidAuthenticationToken', message: 'The access token is invalid.' } } }), 'GET managed cluster prod', EP);
    expect(e).toBeInstanceOf(AuthenticationError);
    expect(e.message).toBe('Azure Resource Manager at https://management.azure.com refused the credential (401 InvalidAuthenticationToken: The access token is invalid.): GET managed cluster prod.');
    expect((e as AuthenticationError).hint).toContain('az login');
  });

  it('403 AuthorizationFailed names the action and scope; LinkedAuthorizationFailed stays an API error naming the identities', () => {
    const msg = "The client 'x' with object id 'y' does not have authorization to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' over scope '/subscriptions/s/resourceGroups/rg' or the scope is invalid.";
    const e = toAzureError(Object.assign(rest(403, 'AuthorizationFailed', msg), { details: { error: { code: 'AuthorizationFailed', message: msg } } }), 'PATCH vmss v', EP) as PermissionDeniedError;
    expect(e).toBeInstanceOf(PermissionDeniedError);
    expect(e.refused).toBe('Microsoft.Compute/virtualMachineScaleSets/write');
    expect(e.hint).toContain('on /subscriptions/s/resourceGroups/rg');
    const linked = "does not have permission to perform action(s) 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/api-id'";
    const l = toAzureError(Object.assign(rest(403, 'LinkedAuthorizationFailed', linked), { details: { error: { code: 'LinkedAuthorizationFailed', message: linked } } }), 'PATCH vmss v', EP) as AzureApiError;
    expect(l).toBeInstanceOf(AzureApiError);
    expect(l.identityIds).toEqual(['/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/api-id']);
  });

  it('no HTTP answer: refused/DNS become EndpointUnreachableError, certificate codes TlsTrustError', () => {
    const refused = toAzureError(new RestError('connect ECONNREFUSED 127.0.0.1:1', { code: 'ECONNREFUSED' }), 'GET managed cluster prod', 'https://127.0.0.1:1');
    expect(refused).toBeInstanceOf(EndpointUnreachableError);
    expect(refused.message).toBe('Azure Resource Manager at https://127.0.0.1:1 refuses connections: GET managed cluster prod: connect ECONNREFUSED 127.0.0.1:1 (ECONNREFUSED).');
    const dns = toAzureError(new RestError('getaddrinfo ENOTFOUND management.azure.com', { code: 'ENOTFOUND' }), 'GET x', EP);
    expect(dns.message).toContain('has a host name that does not resolve');
    const tls = toAzureError(new RestError('self-signed certificate in certificate chain', { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), 'GET x', EP);
    expect(tls).toBeInstanceOf(TlsTrustError);
    expect((tls as TlsTrustError).hint).toContain('NODE_EXTRA_CA_CERTS');
  });

  it('other statuses stay AzureApiError', () => {
    const e = toAzureError(Object.assign(rest(404, 'ResourceNotFound', 'not found'), { details: { error: { code: 'ResourceNotFound', message: 'not found' } } }), 'GET vmss v', EP) as AzureApiError;
    expect(e).toBeInstanceOf(AzureApiError);
    expect(e.status).toBe(404);
  });
});
