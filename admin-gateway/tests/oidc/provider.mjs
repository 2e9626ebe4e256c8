// A real OpenID provider for admin-gateway's tests: node's oidc-provider, laid out as
// Authentik is (issuer http://127.0.0.1:<port>/application/o/admin/), issuing RS256 JWT
// access tokens by client credentials with a `groups` claim.
//
//   node provider.mjs <port>      (OIDC_PROVIDER_MODULE: the path of oidc-provider's lib/index.js)
//
// Prints "ready" when listening.
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);

const port = Number(process.argv[2]);
const mount = '/application/o/admin';
const issuer = `http://127.0.0.1:${port}${mount}/`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'ic-admin-client',
    client_secret: 'ic-admin-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  }],
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:ic:admin',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'admin',
        audience: 'ic-admin',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: () => ({ groups: ['admin'] }),
});

const callback = provider.callback();
http
  .createServer((req, res) => {
    if (req.url === mount || req.url.startsWith(`${mount}/`)) {
      // Served under the issuer's path, as Authentik serves each application's (the
      // provider finds its mount path from `originalUrl`, as under express).
      req.originalUrl = req.url;
      req.url = req.url.slice(mount.length) || '/';
      callback(req, res);
    } else {
      res.writeHead(404).end();
    }
  })
  .listen(port, '127.0.0.1', () => console.log('ready'));
