// The Node.js peer of scripts/load-bench: the same TokenReview webhook written the way a Node.js
// team would write it, on fastify and jose (BENCHMARKS.md compares the gateway with it).
//
//   node server.mjs CONFIG_JSON PORT      (NODE_EXTRA_CA_CERTS = the issuer's CA)
//
// CONFIG_JSON is the load benchmark's gateway-1.yaml (JSON): the first issuer's URL and audience.
// Like the gateway it discovers the JWKS from the issuer, allows RS256 and ES256, checks the
// signature, iss, aud, exp and nbf (jose), takes the username from a verified `email`, the
// groups with the prefix `oidc:` and the uid from `sub`, and answers in the request's version.
// Unlike it: no result cache (every review verifies) and no log line per review (fastify's
// logger is off by default).
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [configFile, port] = process.argv.slice(2);
const entry = JSON.parse(readFileSync(configFile, 'utf8')).jwt[0];
const issuer = entry.issuer.url;
const audience = entry.issuer.audiences;
const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
const keys = createRemoteJWKSet(new URL(discovery.jwks_uri));
const VERSIONS = new Set(['authentication.k8s.io/v1', 'authentication.k8s.io/v1beta1']);

const app = Fastify({ bodyLimit: 1024 * 1024 });

app.post('/authenticate', async (request, reply) => {
  const review = request.body;
  const token = review?.spec?.token;
  if (review?.kind !== 'TokenReview' || !VERSIONS.has(review.apiVersion) || typeof token !== 'string') {
    return reply.code(400).send({ error: 'not a TokenReview' });
  }
  const answer = (status) => ({ apiVersion: review.apiVersion, kind: 'TokenReview', status });
  try {
    const { payload } = await jwtVerify(token, keys, { issuer, audience, algorithms: ['RS256', 'ES256'] });
    if (typeof payload.email !== 'string' || payload.email === '' || payload.email_verified !== true) {
      return answer({ authenticated: false });
    }
    const groups = Array.isArray(payload.groups) ? payload.groups : payload.groups ? [payload.groups] : [];
    if (!groups.every((g) => typeof g === 'string')) {
      return answer({ authenticated: false });
    }
    const user = { username: payload.email, uid: payload.sub, groups: groups.map((g) => `oidc:${g}`) };
    return answer({ authenticated: true, user });
  } catch {
    return answer({ authenticated: false });
  }
});

await app.listen({ host: '127.0.0.1', port: Number(port) });
