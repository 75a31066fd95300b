#!/usr/bin/env node
// The "browser" of the login tests: given to `tokenreview-gateway login --browser-command`, it
// is run with the authorization URL as its last argument and does what a person does in a real
// browser: follows redirects with cookies, signs in on the provider's login page, allows (or
// denies) on its consent page, and finally lands on the plugin's loopback callback.
//
//   node browser.mjs URL                    authorization code flow
//   node browser.mjs --device URL USERCODE  device flow: enter the user code, sign in, allow
//   node browser.mjs URL/device?user_code=X the same (verification_uri_complete)
//
// Environment:
//   BROWSER_LOG       a file that gets one line per run (tests count the logins)
//   BROWSER_USER      account (default alice), BROWSER_PASSWORD (default <user>-password)
//   BROWSER_ACTION    allow (default), deny, wrong-state (the callback gets a forged state),
//                     print-code (print the code instead of following the redirect to it,
//                     for authcode-keyboard)
// The provider's certificate is trusted through NODE_EXTRA_CA_CERTS.
import fs from 'node:fs';

const args = process.argv.slice(2);
const explicitDevice = args[0] === '--device';
const start = explicitDevice ? args[1] : args[args.length - 1];
// The plugin opens the device flow's verification_uri_complete: /device?user_code=...
const userCode = explicitDevice ? args[2] : new URL(start).searchParams.get('user_code');
const device = explicitDevice || (new URL(start).pathname.endsWith('/device') && userCode !== null);
const user = process.env.BROWSER_USER ?? 'alice';
const password = process.env.BROWSER_PASSWORD ?? `${user}-password`;
const action = process.env.BROWSER_ACTION ?? 'allow';
if (process.env.BROWSER_LOG) fs.appendFileSync(process.env.BROWSER_LOG, `${device ? 'device' : 'authcode'}\n`);

const jar = new Map();
function remember(res, url) {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    jar.set(`${new URL(url).host} ${pair.slice(0, i)}`, pair);
  }
}
function cookies(url) {
  const host = new URL(url).host;
  return [...jar].filter(([k]) => k.startsWith(`${host} `)).map(([, v]) => v).join('; ');
}

// One request; redirects are followed by hand so cookies are kept per host.
async function go(url, { method = 'GET', form } = {}) {
  let current = url;
  let init = { method, body: form ? new URLSearchParams(form).toString() : undefined };
  for (let hops = 0; hops < 20; hops += 1) {
    if (action === 'print-code' && new URL(current).searchParams.has('code')) {
      console.log(new URL(current).searchParams.get('code'));
      process.exit(0);
    }
    if (action === 'wrong-state' && new URL(current).searchParams.has('code')) {
      const forged = new URL(current);
      forged.searchParams.set('state', 'forged-state');
      current = forged.href;
    }
    const headers = { cookie: cookies(current) };
    if (init.body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(current, { ...init, headers, redirect: 'manual' });
    remember(res, current);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      current = new URL(location, current).href;
      init = { method: 'GET' };
      continue;
    }
    return { url: current, status: res.status, text: await res.text() };
  }
  throw new Error('too many redirects');
}

// The first form on the page: its action and hidden fields.
function form(page) {
  const m = page.text.match(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/);
  if (!m) throw new Error(`no form on ${page.url}: ${page.text.slice(0, 300)}`);
  const fields = {};
  for (const input of m[2].matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
    const name = input[0].match(/name="([^"]*)"/)?.[1];
    const value = input[0].match(/value="([^"]*)"/)?.[1] ?? '';
    if (name) fields[name] = value;
  }
  return { action: new URL(m[1].replace(/&amp;/g, '&'), page.url).href, fields };
}

async function signInAndAnswer(page) {
  if (/<title>Sign-in<\/title>/.test(page.text)) {
    const f = form(page);
    page = await go(f.action, { method: 'POST', form: { ...f.fields, login: user, password } });
  }
  if (/<title>Authorize<\/title>/.test(page.text)) {
    if (action === 'deny') {
      const deny = page.text.match(/<a href="([^"]*\/abort)">/)[1];
      page = await go(new URL(deny, page.url).href);
    } else {
      const f = form(page);
      page = await go(f.action, { method: 'POST', form: f.fields });
    }
  }
  return page;
}

let page;
if (device) {
  page = await go(start);
  const input = form(page);
  page = await go(input.action, { method: 'POST', form: { ...input.fields, user_code: userCode } });
  // The confirmation page ("is this the device you are signing in on?").
  const confirm = form(page);
  page = await go(confirm.action, { method: 'POST', form: { ...confirm.fields, confirm: 'yes' } });
  page = await signInAndAnswer(page);
} else {
  page = await signInAndAnswer(await go(start));
}
console.log(`${page.status} ${page.url.split('?')[0]}`);
