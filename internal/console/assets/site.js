// One site: the popup's card, the failed-attempt monitor, the lockout policy
// and the audit trail, all following the site live while the view is open.
import {h, replace} from './dom.js';
import {PasscodeCard} from './passcode.js';
import {Monitor} from './monitor.js';
import {PolicyEditor} from './policy.js';
import {AuditTrail} from './audit.js';
import {poller, POLL_MS} from './poll.js';

export function mountSite(root, ctx, site) {
  const error = h('p', {class: 'error', role: 'alert', id: 'site-error'});
  const card = new PasscodeCard(site, ctx, {idPrefix: 'card', onChange: () => poll.now()});
  const monitor = new Monitor(site, () => poll.now());
  const policy = new PolicyEditor(site, ctx, () => poll.now());
  const audit = new AuditTrail(site, ctx);
  replace(root,
    h('nav', {class: 'crumbs', 'aria-label': 'Breadcrumb'}, h('a', {href: '#/sites'}, 'Sites'), ' / ', h('span', {'aria-current': 'page'}, site)),
    h('h1', {}, 'Site ', h('span', {class: 'site-name'}, site)),
    ctx.canWrite ? null : h('p', {class: 'readonly-note', id: 'readonly-note'}, 'Read-only: this token is an auditor\u2019s.'),
    error,
    h('div', {class: 'site-grid'},
      h('div', {class: 'col'}, card.el, policy.el),
      h('div', {class: 'col col-wide'}, monitor.el)),
    audit.el);

  const poll = poller(async () => {
    try {
      const base = ctx.client.site(site);
      const filter = monitor.filter;
      const [state, attempts, filtered] = await Promise.all([
        ctx.client.get(base + '/passcode'),
        ctx.client.get(base + '/attempts?limit=500'),
        filter !== 'all' ? ctx.client.get(base + '/attempts?limit=50&outcome=' + encodeURIComponent(filter)) : null,
      ]);
      error.textContent = '';
      card.update(state);
      policy.update(state);
      // A list fetched for a filter since changed is not drawn.
      if (filter === monitor.filter) monitor.update(state, attempts.attempts || [], filtered && (filtered.attempts || []));
      await audit.refresh(false);
    } catch (err) {
      error.textContent = 'Could not load the site. ' + err.message;
    }
  }, POLL_MS);

  return () => {
    poll.stop();
    card.destroy();
  };
}
