// An OpenID Connect provider (npm oidc-provider) and a SCIM 2.0 directory behind it (npm
// scimmy + scimmy-routers on express 4), for attest's integration tests.
//
//   node oidc-scim.mjs --provider-port P --scim-port S --data FILE
//                      [--expire-after N] [--member-cap N] [--console-redirect URL]
//
// The provider has one confidential client, `attest` / `attest-client-secret`
// (client_secret_basic), allowed the client-credentials grant. With the resource indicator
// http://127.0.0.1:S/scim it issues JWT access tokens for that audience. The SCIM server
// accepts only such tokens, verified against the provider's JWKS; any other request gets 401.
// FILE holds {"users": [...], "groups": [...]} as SCIM resources (without `meta`).
// --expire-after N: a token is refused after N requests (as if it had expired), so that a
//   client must get a new one mid-sync.
// --member-cap N: group resources list at most N members, as some servers cap big groups; the
//   rest can be paged with /Users?filter=groups.value eq "<id>".
// --console-redirect URL: a second confidential client, `attest-console` /
//   `attest-console-secret`, for staff sign-in with the authorization code flow (PKCE
//   required) back to URL. FILE's "staff" list holds the accounts: {login, password, sub,
//   email, email_verified (default true), name, groups, amr}. The login page checks the
//   password; the ID token carries email, email_verified, name, groups, acr and amr.
// Prints "ready" on stdout once both listen.

import http from "node:http";
import fs from "node:fs";
import Provider from "oidc-provider";
import express from "express";
import SCIMMY from "scimmy";
import SCIMMYRouters from "scimmy-routers";
import { createRemoteJWKSet, jwtVerify } from "jose";

const args = Object.fromEntries(
    process.argv.slice(2).reduce((pairs, arg, i, all) =>
        arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs, []));
const providerPort = Number(args["provider-port"]);
const scimPort = Number(args["scim-port"]);
const expireAfter = args["expire-after"] ? Number(args["expire-after"]) : Infinity;
const memberCap = args["member-cap"] ? Number(args["member-cap"]) : Infinity;
const data = JSON.parse(fs.readFileSync(args.data, "utf8"));
const consoleRedirect = args["console-redirect"];
const staff = data.staff ?? [];

const issuer = `http://127.0.0.1:${providerPort}`;
const resource = `http://127.0.0.1:${scimPort}/scim`;

const provider = new Provider(issuer, {
    clients: [{
        client_id: "attest",
        client_secret: "attest-client-secret",
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: "client_secret_basic",
    }, ...(consoleRedirect ? [{
        client_id: "attest-console",
        client_secret: "attest-console-secret",
        grant_types: ["authorization_code"],
        redirect_uris: [consoleRedirect],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
    }] : [])],
    scopes: ["openid", "email", "profile", "groups", "scim.read"],
    // acr and amr ride with the openid scope, as most providers send them.
    claims: {
        openid: ["sub", "acr", "amr", "auth_time"], email: ["email", "email_verified"], profile: ["name"],
        groups: ["groups"],
    },
    conformIdTokenClaims: false,
    acrValues: ["urn:attest:test:password", "urn:attest:test:mfa"],
    pkce: { required: () => true },
    findAccount: async (ctx, sub) => {
        const account = staff.find((a) => a.sub === sub);
        return account && {
            accountId: sub,
            claims: async () => ({
                sub, email: account.email, email_verified: account.email_verified ?? true,
                name: account.name, groups: account.groups,
            }),
        };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
            enabled: true,
            useGrantedResource: () => true,
            getResourceServerInfo: (ctx, indicator) => {
                if (indicator !== resource) {
                    throw new Provider.errors.InvalidTarget();
                }
                return { scope: "scim.read", audience: resource, accessTokenTTL: 600, accessTokenFormat: "jwt" };
            },
        },
    },
});
provider.proxy = false;

// Users carry the groups that name them directly, so that a filter on groups.value works.
const groupsOf = (userId) => data.groups
    .filter((g) => (g.members ?? []).some((m) => m.value === userId))
    .map((g) => ({ value: g.id, display: g.displayName }));
const user = (u) => ({ ...u, groups: groupsOf(u.id) });
const group = (g) => ({ ...g, members: (g.members ?? []).slice(0, memberCap) });

// SCIMMY leaves filtering to the handler; paging it does itself.
const filtered = (res, list) => res.filter ? res.filter.match(list) : list;
SCIMMY.Resources.declare(SCIMMY.Resources.User)
    .egress((res) => res.id
        ? user(data.users.find((u) => u.id === res.id))
        : filtered(res, data.users.map(user)));
SCIMMY.Resources.declare(SCIMMY.Resources.Group)
    .egress((res) => res.id
        ? group(data.groups.find((g) => g.id === res.id))
        : filtered(res, data.groups.map(group)));
SCIMMY.Resources.User.extend(SCIMMY.Schemas.EnterpriseUser, false);

const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
const uses = new Map();
const scim = express();
scim.use("/scim", new SCIMMYRouters({
    type: "bearer",
    handler: async (request) => {
        const token = request.header("Authorization")?.replace(/^Bearer /, "");
        if (!token) {
            throw new Error("no bearer token");
        }
        let payload;
        try {
            ({ payload } = await jwtVerify(token, jwks, { issuer, audience: resource }));
        } catch (error) {
            throw new Error(`token refused: ${error.code ?? error.message}`);
        }
        const used = (uses.get(payload.jti) ?? 0) + 1;
        uses.set(payload.jti, used);
        if (used > expireAfter) {
            throw new Error("token expired");
        }
        return payload.client_id ?? payload.sub;
    },
}));

let listening = 0;
const ready = () => {
    listening += 1;
    if (listening === 2) {
        console.log("ready");
    }
};
// The login interaction: a form, and a password check.
const loginPage = (uid, message) => `<!DOCTYPE html><html lang="en"><head><title>Sign in</title></head>
<body><main><h1>Sign in to the test provider</h1>${message ? `<p role="alert">${message}</p>` : ""}
<form method="post" action="/interaction/${uid}/login">
<label>Login <input name="login" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form></main></body></html>`;
const readForm = (req) => new Promise((resolve) => {
    let body = "";
    req.on("data", (chunk) => { body += chunk; });
    req.on("end", () => resolve(new URLSearchParams(body)));
});
const providerCallback = provider.callback();
http.createServer(async (req, res) => {
    const match = req.url.match(/^\/interaction\/([^/?]+)(\/login)?/);
    if (!match) {
        return providerCallback(req, res);
    }
    try {
        const details = await provider.interactionDetails(req, res);
        if (!match[2]) {
            res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
            return res.end(loginPage(details.uid));
        }
        const form = await readForm(req);
        const account = staff.find((a) => a.login === form.get("login"));
        if (!account || account.password !== form.get("password")) {
            res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
            return res.end(loginPage(details.uid, "Wrong login or password."));
        }
        const grant = new provider.Grant({ accountId: account.sub, clientId: details.params.client_id });
        grant.addOIDCScope(details.params.scope);
        const grantId = await grant.save();
        const amr = account.amr ?? ["pwd"];
        await provider.interactionFinished(req, res, {
            login: {
                accountId: account.sub,
                amr,
                acr: amr.includes("otp") ? "urn:attest:test:mfa" : "urn:attest:test:password",
            },
            consent: { grantId },
        }, { mergeWithLastSubmission: false });
    } catch (error) {
        res.writeHead(400, { "content-type": "text/plain" });
        res.end(`interaction failed: ${error.message}`);
    }
}).listen(providerPort, "127.0.0.1", ready);
scim.listen(scimPort, "127.0.0.1", ready);
