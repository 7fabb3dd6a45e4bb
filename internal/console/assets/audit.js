// The audit trail, newest first, paged with the API's cursor. The first page
// follows new events while it is shown.
import {h, replace, fmtTimeShort} from './dom.js';

const TYPE_WORDS = {
  PasscodeGenerated: 'Generated',
  PasscodeRevealed: 'Revealed',
  PasscodeDisabled: 'Disabled',
  EnrollmentAttemptFailed: 'Attempt failed',
  EnrollmentAttemptSucceeded: 'Enrolled',
  LockoutPolicyChanged: 'Policy changed',
  EnrollmentAttemptExcused: 'Attempt not counted',
  PasscodeExpired: 'Expired',
  PasscodeLockoutSimulated: 'Lockout simulated',
};

export class AuditTrail {
  constructor(site, ctx) {
    this.site = site;
    this.ctx = ctx;
    this.cursors = ['']; // cursors[i] is the cursor of page i
    this.page = 0;
    this.next = '';
    this.limit = 20;
    this.table = h('div', {id: 'audit-table'});
    this.error = h('p', {class: 'error', role: 'alert', id: 'audit-error'});
    this.pageInfo = h('span', {id: 'audit-page', 'aria-live': 'polite'});
    this.newer = h('button', {type: 'button', class: 'btn', id: 'audit-newer', onclick: () => this.go(this.page - 1)}, '\u2190 Newer');
    this.older = h('button', {type: 'button', class: 'btn', id: 'audit-older', onclick: () => this.go(this.page + 1)}, 'Older \u2192');
    this.newest = h('button', {type: 'button', class: 'btn', id: 'audit-newest', onclick: () => this.go(0)}, 'Newest');
    this.sizeSel = h('select', {id: 'audit-limit', onchange: () => {
      this.limit = parseInt(this.sizeSel.value, 10);
      this.cursors = [''];
      this.go(0);
    }}, [10, 20, 50, 100].map((n) => h('option', {value: n, selected: n === this.limit}, String(n))));
    this.el = h('section', {class: 'card audit', id: 'audit', 'aria-labelledby': 'audit-title'},
      h('h2', {id: 'audit-title', class: 'card-title'}, 'Audit trail'),
      h('div', {class: 'pager'}, this.newest, this.newer, this.pageInfo, this.older,
        h('label', {for: 'audit-limit', class: 'pager-size'}, 'Per page'), this.sizeSel),
      this.error, this.table);
  }

  // refresh reloads the page shown; only the first page changes with time.
  async refresh(always) {
    if (this.page !== 0 && !always) return;
    await this.load();
  }

  async go(page) {
    if (page < 0 || page >= this.cursors.length) return;
    this.page = page;
    await this.load();
  }

  async load() {
    const cursor = this.cursors[this.page];
    let q = `?limit=${this.limit}`;
    if (cursor) q += '&cursor=' + encodeURIComponent(cursor);
    try {
      const res = await this.ctx.client.get(this.ctx.client.site(this.site) + '/audit' + q);
      this.error.textContent = '';
      this.next = res.next_cursor || '';
      this.cursors.length = this.page + 1;
      if (this.next) this.cursors.push(this.next);
      this.render(res.entries || []);
    } catch (err) {
      this.error.textContent = 'Could not load the audit trail. ' + err.message;
    }
  }

  render(entries) {
    this.pageInfo.textContent = `Page ${this.page + 1}`;
    this.newer.disabled = this.page === 0;
    this.newest.disabled = this.page === 0;
    this.older.disabled = !this.next;
    if (!entries.length) {
      replace(this.table, h('p', {class: 'muted'}, 'Nothing recorded yet.'));
      return;
    }
    replace(this.table, h('table', {class: 'table compact'},
      h('thead', {}, h('tr', {},
        h('th', {scope: 'col'}, 'Time'), h('th', {scope: 'col'}, 'Event'), h('th', {scope: 'col'}, 'Actor'), h('th', {scope: 'col'}, 'What'))),
      h('tbody', {id: 'audit-body'}, entries.map((e) => h('tr', {'data-seq': e.seq, 'data-type': e.type},
        h('td', {}, fmtTimeShort(e.at)),
        h('td', {}, h('span', {class: 'event event-' + e.type}, TYPE_WORDS[e.type] || e.type)),
        h('td', {}, e.actor ? `${e.actor.id || ''}${e.actor.kind && e.actor.kind !== 'admin' ? ' (' + e.actor.kind + ')' : ''}` : '—'),
        h('td', {}, e.summary || ''))))));
  }
}
