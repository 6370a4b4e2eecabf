// A real OAuth 2.1 authorization server for the tests: oidc-provider (npm) with dynamic client
// registration, PKCE, resource indicators (RFC 8707) issuing JWT access tokens, the
// client-credentials grant and token introspection.
//
// Usage: node server.mjs DIR
//   DIR/config.json (read): {"port": 0, "ttl": 300, "alg": "RS256", "opaque": false,
//                            "scopes": ["mcp:tools", "mcp:admin"],
//                            "clients": [{"client_id", "client_secret", "scope", "auth", "claims"}]}
//                            (a client with "auth": "private_key_jwt" gets an EC P-256 key pair: its
//                            public half registered, its private half written to
//                            DIR/client-<client_id>.pem for the client to sign with)
//   DIR/keys.json (read if present, else written): the signing keys as private JWKs (a restart
//                            with the file removed rotates them).
//   DIR/pems.json (written): {kid: {"alg", "pem"}} the same private keys as PKCS#8 PEM, so a test
//                            can sign tokens of its own with the issuer's real keys.
// Prints "listening on http://127.0.0.1:PORT" once ready.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Provider from 'oidc-provider';

const dir = process.argv[2];
const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
const keysFile = join(dir, 'keys.json');

function newKeys() {
  const out = [];
  const make = (type, options, alg) => {
    const { privateKey } = generateKeyPairSync(type, options);
    const jwk = privateKey.export({ format: 'jwk' });
    jwk.alg = alg;
    jwk.use = 'sig';
    jwk.kid = `${alg.toLowerCase()}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    out.push(jwk);
  };
  make('rsa', { modulusLength: 2048 }, 'RS256');
  make('ec', { namedCurve: 'P-256' }, 'ES256');
  make('ed25519', {}, 'EdDSA');
  return out;
}

const keys = existsSync(keysFile) ? JSON.parse(readFileSync(keysFile, 'utf8')) : newKeys();
writeFileSync(keysFile, JSON.stringify(keys));
const pems = {};
for (const jwk of keys) {
  const pem = createPrivateKey({ key: jwk, format: 'jwk' }).export({ format: 'pem', type: 'pkcs8' });
  pems[jwk.kid] = { alg: jwk.alg, pem };
}
writeFileSync(join(dir, 'pems.json'), JSON.stringify(pems));

const { createServer } = await import('node:http');
const server = createServer();
await new Promise((resolve) => server.listen(config.port || 0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const scopes = config.scopes || ['mcp:tools', 'mcp:admin'];

function clientKeys(c) {
  if (c.auth !== 'private_key_jwt') return {};
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(join(dir, `client-${c.client_id}.pem`), privateKey.export({ format: 'pem', type: 'pkcs8' }));
  return { jwks: { keys: [createPublicKey(privateKey).export({ format: 'jwk' })] } };
}

const provider = new Provider(issuer, {
  clients: (config.clients || []).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: c.auth || 'client_secret_post',
    scope: c.scope || scopes.join(' '),
    ...clientKeys(c),
  })),
  jwks: { keys },
  scopes: ['openid', 'offline_access', ...scopes],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      useGrantedResource: () => true,
      defaultResource: () => config.defaultResource,
      getResourceServerInfo: (ctx, resource) => ({
        scope: scopes.join(' '),
        audience: resource,
        accessTokenTTL: config.ttl || 300,
        accessTokenFormat: config.opaque ? 'opaque' : 'jwt',
        jwt: { sign: { alg: config.alg || 'RS256' } },
      }),
    },
  },
  // A client's `claims` (config) go into its access tokens (e.g. `groups`, for the rules).
  extraTokenClaims: async (ctx, token) =>
    (config.clients || []).find((c) => c.client_id === token.clientId)?.claims,
  // Refresh tokens for clients allowed the grant (without the OIDC offline_access ceremony).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    ClientCredentials: config.ttl || 300,
    AccessToken: config.ttl || 300,
    RefreshToken: 3600,
  },
});
provider.proxy = false;
server.on('request', provider.callback());
console.log(`listening on ${issuer}`);
