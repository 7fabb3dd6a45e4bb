// The console's entry point: sign-in, the session, navigation.
//
// The token is kept in this tab only: in sessionStorage when the person asks
// to stay signed in while the tab is open, else in memory. It is never put in
// a cookie, a URL or the page.
import {h, replace} from './dom.js';
import {Client} from './api.js';
import {mountSites} from './sites.js';
import {mountSite} from './site.js';
import {mountTokens} from './tokens.js';

const STORE_KEY = 'enrollgate.console.token';
const SITE_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

const app = {
  ctx: null,
  unmount: null,
};

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOutBtn = document.getElementById('sign-out');
const tokensLink = document.getElementById('nav-tokens');

function storedToken() {
  try {
    return sessionStorage.getItem(STORE_KEY);
  } catch {
    return null;
  }
}

function forget() {
  try {
    sessionStorage.removeItem(STORE_KEY);
  } catch {
    // storage disabled: nothing was kept
  }
}

function teardown() {
  if (app.unmount) app.unmount();
  app.unmount = null;
}

function signOut(message) {
  teardown();
  forget();
  app.ctx = null;
  nav.hidden = true;
  who.textContent = '';
  showSignIn(message);
}

function showSignIn(message) {
  const token = h('input', {id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false',
    required: true, 'aria-describedby': 'token-hint'});
  const keep = h('input', {id: 'keep', name: 'keep', type: 'checkbox', checked: true});
  const error = h('p', {class: 'error', role: 'alert', id: 'signin-error'}, message || '');
  const button = h('button', {type: 'submit', class: 'btn btn-primary', id: 'sign-in'}, 'Sign in');
  const form = h('form', {id: 'signin', class: 'card signin', novalidate: true, 'aria-labelledby': 'signin-title', onsubmit: async (e) => {
    e.preventDefault();
    const value = token.value.trim();
    if (!value) {
      error.textContent = 'Paste an API token first.';
      token.focus();
      return;
    }
    button.disabled = true;
    error.textContent = '';
    try {
      await start(value, keep.checked);
    } catch (err) {
      error.textContent = err.message;
      token.focus();
    } finally {
      button.disabled = false;
    }
  }},
  h('h1', {id: 'signin-title'}, 'Sign in'),
  h('div', {class: 'field'},
    h('label', {for: 'token'}, 'API token'), token,
    h('p', {class: 'hint', id: 'token-hint'}, 'An admin or auditor token (eg_\u2026). It is sent only to this service, as a bearer token.')),
  h('div', {class: 'field check'}, keep,
    h('label', {for: 'keep'}, 'Stay signed in while this tab is open (session storage; never a cookie)')),
  error,
  h('div', {class: 'actions'}, button));
  replace(view, form);
  token.focus();
}

// start checks the token with the service and opens the console.
async function start(token, keep) {
  const client = new Client(token, () => signOut('The token was refused (revoked or expired): sign in again.'));
  const me = await client.get('/v1/whoami', {quiet401: true}).catch((err) => {
    if (err.status === 401) err.message = 'The token was refused: it is unknown, revoked or mistyped.';
    throw err;
  });
  if (me.role !== 'admin' && me.role !== 'auditor') {
    throw new Error('This is an enrollment token: it can only verify passcodes. Sign in with an admin or auditor token.');
  }
  const allSites = (me.sites || []).includes('*');
  let tokensApi = false;
  if (me.role === 'admin' && allSites) {
    // The token API may be absent from this build: the page hides itself.
    tokensApi = await client.get('/v1/tokens').then(() => true, (err) => err.status !== 404 && err.status !== 405);
  }
  if (keep) {
    try {
      sessionStorage.setItem(STORE_KEY, token);
    } catch {
      // storage disabled: the token stays in memory
    }
  } else {
    forget();
  }
  app.ctx = {client, me, canWrite: me.role === 'admin', tokensApi, navigate};
  who.textContent = `${me.id} \u00b7 ${me.role} \u00b7 ${allSites ? 'all sites' : (me.sites || []).join(', ')}`;
  tokensLink.hidden = !tokensApi;
  nav.hidden = false;
  document.body.dataset.role = me.role;
  route();
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  if (!app.ctx) return;
  teardown();
  const hash = location.hash || '#/sites';
  const m = hash.match(/^#\/site\/([^/]+)$/);
  for (const a of nav.querySelectorAll('a')) a.removeAttribute('aria-current');
  if (m && SITE_RE.test(m[1])) {
    app.unmount = mountSite(view, app.ctx, m[1]);
    document.title = `${m[1]} \u2013 enrollgate console`;
    view.focus();
  } else if (hash === '#/tokens' && app.ctx.tokensApi) {
    tokensLink.setAttribute('aria-current', 'page');
    app.unmount = mountTokens(view, app.ctx);
    document.title = 'Tokens \u2013 enrollgate console';
  } else {
    document.getElementById('nav-sites').setAttribute('aria-current', 'page');
    app.unmount = mountSites(view, app.ctx);
    document.title = 'Sites \u2013 enrollgate console';
  }
}

window.addEventListener('hashchange', route);
signOutBtn.addEventListener('click', () => signOut(''));
// Leaving the page forgets shown passcodes at once.
window.addEventListener('pagehide', teardown);

const saved = storedToken();
if (saved) {
  start(saved, true).catch((err) => {
    forget();
    showSignIn(err.message);
  });
} else {
  showSignIn('');
}

// The skip link moves the focus without touching the hash (the router's).
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  view.focus();
});
