// A real OAuth 2.0 authorization server (panva/oidc-provider, OpenID Certified) for the
// gateway's introspection tests. The Rust test harness starts it on loopback with a certificate
// from its own generated CA and reads the port from the first line of stdout.
//
// Environment: TLS_CERT and TLS_KEY (PEM file paths). Everything else is fixed below, so the
// tests and this file agree on client ids and secrets.
import fs from 'node:fs';
import https from 'node:https';
import { Provider } from 'oidc-provider';

const clients = [
  // The gateway's own credentials for the introspection endpoint, one per client auth method.
  { client_id: 'gateway', client_secret: 'gateway-secret', grant_types: [], redirect_uris: [], response_types: [],
    token_endpoint_auth_method: 'client_secret_basic' },
  { client_id: 'gateway-post', client_secret: 'gateway-post-secret', grant_types: [], redirect_uris: [],
    response_types: [], token_endpoint_auth_method: 'client_secret_post' },
  // Workloads that get access tokens with the client credentials grant.
  { client_id: 'ci-deployer', client_secret: 'ci-deployer-secret', grant_types: ['client_credentials'],
    redirect_uris: [], response_types: [], scope: 'deploy read' },
  { client_id: 'other-app', client_secret: 'other-app-secret', grant_types: ['client_credentials'],
    redirect_uris: [], response_types: [], scope: 'read' },
];

// Requests per path, so tests can prove which calls reached the server and which did not.
const counts = {};

const issuer = process.env.ISSUER ?? 'https://127.0.0.1';
const provider = new Provider(issuer, {
  clients,
  scopes: ['deploy', 'read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Only the gateway's clients may introspect, and a token may be revoked by its own client.
    introspection: {
      enabled: true,
      allowedPolicy: (ctx, client) => client.clientId.startsWith('gateway'),
    },
    revocation: {
      enabled: true,
      allowedPolicy: (ctx, client, token) => token.clientId === client.clientId,
    },
  },
  ttl: { ClientCredentials: 600 },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/counts') {
    ctx.body = counts;
    return;
  }
  counts[ctx.path] = (counts[ctx.path] ?? 0) + 1;
  await next();
});

const server = https.createServer(
  { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) },
  provider.callback(),
);
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
