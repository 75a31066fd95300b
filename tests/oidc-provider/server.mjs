// A real OAuth 2.0 / OpenID Connect server (panva/oidc-provider, OpenID Certified) for the
// gateway's introspection tests and the `login` exec plugin's tests. The Rust test harness starts
// it on loopback with a certificate from its own generated CA and reads the port from the first
// line of stdout.
//
// Environment: TLS_CERT, TLS_KEY and SIGNING_KEY (PEM files); PORT and ISSUER (optional); DEVICE_*
// (device flow timing, below). Everything else is fixed
// below, so the tests and this file agree on client ids, secrets and accounts.
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { Provider, errors } from 'oidc-provider';

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
  // kubectl's login plugin: a public native client (PKCE, no secret) with loopback redirects on
  // any port (RFC 8252 7.3), the device flow and refresh tokens, and the password grant.
  { client_id: 'kubectl', application_type: 'native', token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code', 'password'],
    response_types: ['code'], redirect_uris: ['http://localhost', 'http://127.0.0.1'] },
  // The same with a client secret (providers that only offer confidential clients).
  { client_id: 'kubectl-confidential', client_secret: 'kubectl-confidential-secret', application_type: 'native',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token', 'password', 'client_credentials'],
    response_types: ['code'], redirect_uris: ['http://localhost', 'http://127.0.0.1'], scope: 'openid email groups profile offline_access read' },
];

// People who log in. The password is checked on the login page and by the password grant.
const accounts = {
  alice: { password: 'alice-password', email: 'alice@example.com', groups: ['developers', 'viewers'], name: 'Alice' },
  bob: { password: 'bob-password', email: 'bob@example.com', groups: ['viewers'], name: 'Bob' },
};

// Requests per path and token grants per grant_type, so tests can prove which calls reached the
// server and which did not.
const counts = {};
const bump = (key) => { counts[key] = (counts[key] ?? 0) + 1; };

// The ID token lifetime, changeable by a test (POST /__test/idtoken-ttl?seconds=N) to make a
// cached token stale without waiting an hour.
let idTokenTtl = 3600;

// The ID token signing key (an EC P-256 PKCS#8 PEM file) comes from the test harness. NB:
// generating it here with crypto.generateKeyPairSync can deadlock Node 20 at the first garbage
// collection (a key generation job's destructor takes a lock the JWK export holds).
const privateKey = crypto.createPrivateKey(fs.readFileSync(process.env.SIGNING_KEY));
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-es256', use: 'sig', alg: 'ES256' };

// Listen first (on PORT, or a port the system picks: no race with other tests for a free
// one), then the issuer URL can name the port.
const server = https.createServer({ cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) });
await new Promise((resolve) => { server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve); });
const issuer = process.env.ISSUER ?? `https://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  scopes: ['openid', 'offline_access', 'email', 'groups', 'profile', 'deploy', 'read'],
  claims: { email: ['email', 'email_verified'], groups: ['groups'], profile: ['name'] },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: account.email, email_verified: true, groups: account.groups, name: account.name };
      },
    };
  },
  // Always hand out a refresh token to a client allowed the grant (many providers do; this one
  // would otherwise want prompt=consent with offline_access).
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  // Scope claims go into the ID token itself (as Dex and Keycloak do), since that is what the
  // gateway maps; oidc-provider would otherwise keep them for userinfo.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
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
  ttl: {
    ClientCredentials: 600,
    AccessToken: 3600,
    Grant: 86400,
    IdToken: () => idTokenTtl,
    DeviceCode: () => Number(process.env.DEVICE_CODE_TTL ?? 600),
  },
  pkce: { required: () => true },
});
provider.proxy = false;

// Resource owner password credentials (RFC 6749 4.3), which oidc-provider leaves to the
// deployment: check the account, record a grant, issue an access token and an ID token.
provider.registerGrantType('password', async (ctx) => {
  const { client, params } = ctx.oidc;
  const account = accounts[params.username];
  if (!account || account.password !== params.password) {
    throw new errors.InvalidGrant('invalid username or password');
  }
  const allowed = new Set(['openid', 'email', 'groups', 'profile']);
  const scope = (params.scope ?? 'openid').split(' ').filter((s) => allowed.has(s)).join(' ');
  const grant = new provider.Grant({ accountId: params.username, clientId: client.clientId });
  grant.addOIDCScope(scope);
  const grantId = await grant.save();
  const at = new provider.AccessToken({ accountId: params.username, client, grantId, scope, gty: 'password' });
  const accessToken = await at.save();
  const claims = { sub: params.username, email: account.email, email_verified: true, groups: account.groups };
  const idToken = new provider.IdToken(claims, { ctx, client });
  idToken.scope = scope;
  ctx.body = {
    access_token: accessToken,
    id_token: await idToken.issue({ use: 'idtoken' }),
    expires_in: at.expiration,
    token_type: 'Bearer',
    scope,
  };
}, ['username', 'password', 'scope']);

provider.on('server_error', (ctx, err) => console.error(err));
provider.on('grant.success', (ctx) => bump(`grant:${ctx.oidc.params.grant_type}`));
provider.on('grant.error', (ctx) => bump(`grant_error:${ctx.oidc.params?.grant_type}`));

const html = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>`
  + `<body><h1>${title}</h1>${body}</body></html>`;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function formBody(req) {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  return Object.fromEntries(new URLSearchParams(raw));
}

// The login and consent pages (the interactions oidc-provider leaves to the deployment).
async function interaction(ctx, uid, action) {
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  if (ctx.method === 'GET' && !action) {
    ctx.type = 'html';
    if (prompt.name === 'login') {
      ctx.body = html('Sign-in', `<form method="post" action="/interaction/${uid}/login">`
        + `<input name="login" placeholder="username"><input name="password" type="password">`
        + `<button type="submit">Sign in</button></form>`);
    } else {
      ctx.body = html('Authorize', `<p>${esc(params.client_id)} asks for: ${esc(params.scope)}</p>`
        + `<form method="post" action="/interaction/${uid}/confirm"><button type="submit">Allow</button></form>`
        + `<a href="/interaction/${uid}/abort">Deny</a>`);
    }
    return;
  }
  let result;
  if (action === 'login' && ctx.method === 'POST') {
    const body = await formBody(ctx.req);
    const account = accounts[body.login];
    if (!account || account.password !== body.password) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = html('Sign-in failed', '<p>Wrong username or password.</p>');
      return;
    }
    result = { login: { accountId: body.login } };
  } else if (action === 'confirm' && ctx.method === 'POST') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scope] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else if (action === 'abort') {
    result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
  } else {
    ctx.status = 404;
    return;
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
}

// RFC 8628 3.5: a device code polled sooner than this after its last poll (or its issue) gets
// slow_down. DEVICE_INTERVAL is the interval advertised; a provider may enforce more.
const deviceMinInterval = Number(process.env.DEVICE_MIN_INTERVAL ?? 0) * 1000;
const deviceLastPoll = new Map();

// A misbehaving provider, for the plugin's verification tests: POST /__test/tamper?what=aud
// re-signs the next ID tokens for another audience; what=signature breaks their signature.
let tamper = '';
const b64url = (buf) => Buffer.from(buf).toString('base64url');
function tampered(idToken) {
  const [h, p, sig] = idToken.split('.');
  if (tamper === 'signature') {
    return `${h}.${p}.${b64url(Buffer.from(sig, 'base64url').map((b) => b ^ 0xff))}`;
  }
  const payload = { ...JSON.parse(Buffer.from(p, 'base64url')), aud: 'some-other-client' };
  const input = `${h}.${b64url(JSON.stringify(payload))}`;
  const signature = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64url(signature)}`;
}

async function rawForm(ctx) {
  let raw = '';
  for await (const chunk of ctx.req) raw += chunk;
  // oidc-provider reads an already-read body from req.body.
  ctx.req.body = raw;
  return new URLSearchParams(raw);
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/counts') {
    ctx.body = counts;
    return;
  }
  if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
    tamper = ctx.query.what ?? '';
    ctx.body = { tamper };
    return;
  }
  if (ctx.path === '/token' && ctx.method === 'POST') {
    const form = await rawForm(ctx);
    const deviceCode = form.get('device_code');
    if (form.get('grant_type') === 'urn:ietf:params:oauth:grant-type:device_code' && deviceCode) {
      const last = deviceLastPoll.get(deviceCode);
      deviceLastPoll.set(deviceCode, Date.now());
      if (last !== undefined && Date.now() - last < deviceMinInterval) {
        bump('slow_down');
        ctx.status = 400;
        ctx.body = { error: 'slow_down', error_description: 'polling too fast' };
        return;
      }
    }
    await next();
    if (tamper && ctx.body?.id_token) ctx.body = { ...ctx.body, id_token: tampered(ctx.body.id_token) };
    return;
  }
  if (ctx.path === '/device/auth' && ctx.method === 'POST') {
    await next();
    if (ctx.body?.device_code) {
      deviceLastPoll.set(ctx.body.device_code, Date.now());
      if (process.env.DEVICE_INTERVAL) ctx.body = { ...ctx.body, interval: Number(process.env.DEVICE_INTERVAL) };
    }
    return;
  }
  if (ctx.path === '/__test/idtoken-ttl' && ctx.method === 'POST') {
    idTokenTtl = Number(ctx.query.seconds);
    ctx.body = { idTokenTtl };
    return;
  }
  bump(ctx.path);
  const m = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (m) {
    await interaction(ctx, m[1], m[2]);
    return;
  }
  await next();
});

server.on('request', provider.callback());
console.log(JSON.stringify({ port: server.address().port }));
