// API tokens, for admins whose scope is every site: create one (shown once),
// list them with their last use, revoke one.
import {h, replace, fmtTime, copyText} from './dom.js';
import {confirmAction} from './confirm.js';

export function mountTokens(root, ctx) {
  const error = h('p', {class: 'error', role: 'alert', id: 'tokens-error'});
  const list = h('div', {id: 'tokens-list'});
  const created = h('div', {id: 'token-created', class: 'secret-box'});
  const role = h('select', {id: 'token-role', name: 'role'},
    h('option', {value: 'auditor'}, 'auditor: reads'),
    h('option', {value: 'admin'}, 'admin: everything on its sites'),
    h('option', {value: 'enrollment'}, 'enrollment: verifies passcodes'));
  const identity = h('input', {id: 'token-identity', name: 'identity', type: 'text', autocomplete: 'off',
    placeholder: 'auditor@acme.example', 'aria-describedby': 'token-identity-hint'});
  const sites = h('input', {id: 'token-sites', name: 'sites', type: 'text', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'acme, beta', 'aria-describedby': 'token-sites-hint'});
  const formError = h('p', {class: 'error', role: 'alert', id: 'token-form-error'});
  let secret = null;

  const showCreated = (tok) => {
    secret = tok ? tok.token : null;
    if (!tok) {
      replace(created);
      return;
    }
    const code = h('code', {class: 'secret', id: 'token-secret', tabindex: 0}, tok.token);
    const copied = h('span', {class: 'hint', role: 'status'});
    replace(created,
      h('p', {class: 'secret-label'}, `Token for ${tok.identity} (${tok.role}): shown once, copy it now`),
      h('div', {class: 'secret-row'}, code,
        h('button', {type: 'button', class: 'btn', onclick: async () => {
          copied.textContent = secret && await copyText(secret) ? 'Copied.' : 'The browser refused the clipboard: select the token and copy it.';
        }}, 'Copy'),
        h('button', {type: 'button', class: 'btn', id: 'token-hide', onclick: () => showCreated(null)}, 'Done, hide it')),
      copied);
  };

  const form = h('form', {id: 'token-form', class: 'card', novalidate: true, 'aria-labelledby': 'token-form-title', onsubmit: async (e) => {
    e.preventDefault();
    formError.textContent = '';
    const scope = sites.value.split(/[\s,]+/).filter(Boolean);
    try {
      const tok = await ctx.client.post('/v1/tokens', {role: role.value, identity: identity.value.trim(), sites: scope});
      showCreated(tok);
      identity.value = '';
      sites.value = '';
      await load();
    } catch (err) {
      formError.textContent = 'Not created. ' + err.message;
    }
  }},
  h('h2', {id: 'token-form-title', class: 'card-title'}, 'New token'),
  h('div', {class: 'field'}, h('label', {for: 'token-role'}, 'Role'), role),
  h('div', {class: 'field'}, h('label', {for: 'token-identity'}, 'Identity'), identity,
    h('p', {class: 'hint', id: 'token-identity-hint'}, 'Recorded as the actor of what the token does: an email, or a service\u2019s name.')),
  h('div', {class: 'field'}, h('label', {for: 'token-sites'}, 'Sites'), sites,
    h('p', {class: 'hint', id: 'token-sites-hint'}, 'Site IDs separated by commas, or * for every site.')),
  formError,
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'btn btn-primary', id: 'token-create'}, 'Create token')));

  replace(root, h('h1', {}, 'API tokens'), error, form, created,
    h('section', {class: 'card', 'aria-labelledby': 'tokens-title'}, h('h2', {id: 'tokens-title', class: 'card-title'}, 'Tokens'), list));

  const load = async () => {
    try {
      const res = await ctx.client.get('/v1/tokens');
      error.textContent = '';
      render(res.tokens || []);
    } catch (err) {
      error.textContent = 'Could not load the tokens. ' + err.message;
    }
  };

  const render = (tokens) => {
    if (!tokens.length) {
      replace(list, h('p', {class: 'muted'}, 'No tokens.'));
      return;
    }
    replace(list, h('table', {class: 'table compact', id: 'tokens'},
      h('thead', {}, h('tr', {}, ['ID', 'Identity', 'Role', 'Sites', 'Created', 'Last used', ''].map((t) =>
        h('th', {scope: 'col'}, t || h('span', {class: 'visually-hidden'}, 'Actions'))))),
      h('tbody', {}, tokens.map((t) => h('tr', {'data-token-id': t.token_id},
        h('td', {}, h('code', {}, t.token_id)),
        h('td', {}, t.identity || ''),
        h('td', {}, t.role || ''),
        h('td', {}, (t.sites || []).join(', ')),
        h('td', {}, fmtTime(t.created_at), t.created_by ? ' by ' + t.created_by : ''),
        h('td', {}, t.last_used_at ? fmtTime(t.last_used_at) : h('span', {class: 'muted'}, 'never')),
        // Bootstrap tokens come from the service's flags: not revocable here.
        h('td', {}, t.bootstrap ? h('span', {class: 'muted', title: 'set by a flag of the service'}, 'bootstrap')
          : h('button', {type: 'button', class: 'btn btn-danger btn-small', 'data-action': 'revoke',
            'aria-label': `Revoke token ${t.token_id} of ${t.identity}`, onclick: () => revoke(t)}, 'Revoke')))))));
  };

  const revoke = async (t) => {
    const ok = await confirmAction({
      title: `Revoke the token of ${t.identity}?`,
      text: 'It stops working over HTTP and NATS within seconds, and cannot be restored.',
      confirmLabel: 'Revoke',
    });
    if (!ok) return;
    try {
      await ctx.client.del('/v1/tokens/' + encodeURIComponent(t.token_id));
      await load();
    } catch (err) {
      error.textContent = 'Not revoked. ' + err.message;
    }
  };

  load();
  return () => {
    secret = null;
  };
}
