// The site list: a status chip and the failed attempts of each site the token
// sees, and the seed's popup behind each Self-service enrollment icon (opened
// by hovering the icon, or by Enter or a click on it).
import {h, replace, fmtTime, chip, chipStatus, attemptsMeter} from './dom.js';
import {PasscodeCard} from './passcode.js';
import {poller, POLL_MS} from './poll.js';

const SITE_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function mountSites(root, ctx) {
  const rows = new Map();
  const error = h('p', {class: 'error', role: 'alert', id: 'sites-error'});
  const tbody = h('tbody', {id: 'sites-body'});
  const empty = h('p', {class: 'muted', id: 'sites-empty', hidden: true},
    'No site has events yet. Open a site by its ID to generate its first passcode.');
  const openInput = h('input', {id: 'open-site', name: 'site', type: 'text', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'acme', pattern: SITE_RE.source, 'aria-describedby': 'open-site-hint'});
  const openError = h('p', {class: 'error', role: 'alert', id: 'open-site-error'});
  const openForm = h('form', {class: 'inline-form', id: 'open-site-form', novalidate: true, onsubmit: (e) => {
    e.preventDefault();
    const site = openInput.value.trim();
    if (!SITE_RE.test(site)) {
      openError.textContent = 'A site ID is 1 to 63 lower-case letters, digits and hyphens, starting with a letter or digit.';
      return;
    }
    ctx.navigate('#/site/' + site);
  }},
  h('label', {for: 'open-site'}, 'Open a site by ID'), openInput,
  h('button', {type: 'submit', class: 'btn'}, 'Open'),
  h('span', {id: 'open-site-hint', class: 'hint'}, 'Sites appear in the list once they have events.'));

  replace(root,
    h('h1', {}, 'Sites'),
    openForm, openError, error,
    h('table', {class: 'table sites', id: 'sites'},
      h('caption', {class: 'visually-hidden'}, 'Sites this token may see'),
      h('thead', {}, h('tr', {},
        h('th', {scope: 'col'}, 'Site'),
        h('th', {scope: 'col'}, 'Self-service enrollment'),
        h('th', {scope: 'col'}, 'Status'),
        h('th', {scope: 'col'}, 'Failed attempts'),
        h('th', {scope: 'col'}, 'Generated'),
        h('th', {scope: 'col'}, 'By'))),
      tbody),
    empty);

  let open = null; // the row whose popup is open

  const closePopup = (returnFocus) => {
    if (!open) return;
    const row = open;
    open = null;
    row.popup.hidden = true;
    row.icon.setAttribute('aria-expanded', 'false');
    row.pinned = false;
    if (returnFocus) row.icon.focus();
  };
  const openPopup = (row, pinned) => {
    if (open && open !== row) closePopup(false);
    open = row;
    row.pinned = row.pinned || pinned;
    row.popup.hidden = false;
    row.icon.setAttribute('aria-expanded', 'true');
  };

  const onKey = (e) => {
    if (e.key === 'Escape' && open && !document.querySelector('dialog[open]')) closePopup(true);
  };
  const onDocClick = (e) => {
    // Clicks in the confirmation dialog belong to the popup's actions.
    // composedPath, not contains: a button that removed itself (Hide) is no
    // longer inside the popup when the click reaches the document.
    const path = e.composedPath();
    if (open && !path.includes(open.wrap) && !path.some((n) => n instanceof HTMLDialogElement) &&
        !document.querySelector('dialog[open]')) closePopup(false);
  };
  document.addEventListener('keydown', onKey);
  document.addEventListener('click', onDocClick);

  const makeRow = (state) => {
    const site = state.site;
    const row = {site, pinned: false, leaveTimer: 0};
    row.card = new PasscodeCard(site, ctx, {heading: 'h3', idPrefix: 'popup', onChange: () => poll.now()});
    // A click inside the popup pins it: it then stays open until closed.
    row.popup = h('div', {class: 'popup', role: 'dialog', 'aria-labelledby': row.card.titleId, hidden: true,
      onclick: () => { row.pinned = true; }},
      row.card.el,
      h('p', {class: 'popup-links'},
        h('a', {href: '#/site/' + site, 'data-role': 'monitor-link'}, 'Failed-attempt monitor, lockout policy and audit trail')),
      h('button', {type: 'button', class: 'btn btn-small popup-close', 'aria-label': 'Close', onclick: () => closePopup(true)}, '\u00d7'));
    row.icon = h('button', {type: 'button', class: 'icon-btn', 'aria-haspopup': 'dialog', 'aria-expanded': 'false',
      'aria-label': `Self-service enrollment of ${site}`, 'data-role': 'enrollment-icon', onclick: () => {
        if (open === row && row.pinned) closePopup(false);
        else {
          openPopup(row, true);
          const first = row.popup.querySelector('button, a');
          if (first) first.focus();
        }
      }}, enrollmentIcon());
    row.wrap = h('div', {class: 'popup-wrap',
      onmouseenter: () => {
        clearTimeout(row.leaveTimer);
        if (open !== row) openPopup(row, false);
      },
      onmouseleave: () => {
        clearTimeout(row.leaveTimer);
        row.leaveTimer = setTimeout(() => {
          if (open === row && !row.pinned && !document.querySelector('dialog[open]')) closePopup(false);
        }, 400);
      }}, row.icon, row.popup);
    row.chipCell = h('td', {'data-role': 'status'});
    row.failedCell = h('td', {'data-role': 'failed'});
    row.genCell = h('td', {});
    row.byCell = h('td', {});
    row.tr = h('tr', {'data-site': site},
      h('th', {scope: 'row'}, h('a', {href: '#/site/' + site}, site)),
      h('td', {}, row.wrap), row.chipCell, row.failedCell, row.genCell, row.byCell);
    return row;
  };

  const render = (sites) => {
    empty.hidden = sites.length > 0;
    const seen = new Set();
    for (const state of sites) {
      seen.add(state.site);
      let row = rows.get(state.site);
      if (!row) {
        row = makeRow(state);
        rows.set(state.site, row);
      }
      row.tr.setAttribute('data-status', chipStatus(state));
      replace(row.chipCell, chip(chipStatus(state)));
      replace(row.failedCell, attemptsMeter(state));
      replace(row.genCell, fmtTime(state.generated_at));
      row.byCell.textContent = state.generated_by || '—';
      row.card.update(state);
    }
    for (const [site, row] of rows) {
      if (!seen.has(site)) {
        if (open === row) closePopup(false);
        row.card.destroy();
        row.tr.remove();
        rows.delete(site);
      }
    }
    // Keep the rows in the server's order (by site) without moving focus.
    let prev = null;
    for (const state of sites) {
      const tr = rows.get(state.site).tr;
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
  };

  const poll = poller(async () => {
    try {
      const res = await ctx.client.get('/v1/sites');
      error.textContent = '';
      render(res.sites || []);
    } catch (err) {
      error.textContent = 'Could not load the sites. ' + err.message;
    }
  }, POLL_MS);

  return () => {
    poll.stop();
    document.removeEventListener('keydown', onKey);
    document.removeEventListener('click', onDocClick);
    for (const row of rows.values()) row.card.destroy();
  };
}

// enrollmentIcon is a phone with a key: the Self-service enrollment icon.
function enrollmentIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '24');
  svg.setAttribute('height', '24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  const add = (tag, attrs) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    svg.appendChild(el);
  };
  add('rect', {x: 5, y: 2, width: 11, height: 20, rx: 2, fill: 'none', stroke: 'currentColor', 'stroke-width': 1.8});
  add('line', {x1: 9, y1: 18.5, x2: 12, y2: 18.5, stroke: 'currentColor', 'stroke-width': 1.8, 'stroke-linecap': 'round'});
  add('circle', {cx: 17, cy: 10, r: 3, class: 'icon-key', stroke: 'currentColor', 'stroke-width': 1.6});
  add('path', {d: 'M17 13v6m0-2h2.2m-2.2-2h1.6', fill: 'none', stroke: 'currentColor', 'stroke-width': 1.6, 'stroke-linecap': 'round'});
  return svg;
}
