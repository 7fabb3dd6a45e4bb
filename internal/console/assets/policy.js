// The lockout policy editor: threshold, window and mode. The server validates;
// its message is shown as it words it.
import {h, replace, parseDuration, fmtDuration, windowWords} from './dom.js';

export class PolicyEditor {
  constructor(site, ctx, onSaved) {
    this.site = site;
    this.ctx = ctx;
    this.onSaved = onSaved;
    this.dirty = false;
    this.body = h('div', {});
    this.el = h('section', {class: 'card policy', id: 'policy', 'aria-labelledby': 'policy-title'},
      h('h2', {id: 'policy-title', class: 'card-title'}, 'Lockout policy'), this.body);
    if (ctx.canWrite) this.buildForm();
  }

  buildForm() {
    this.threshold = h('input', {id: 'policy-threshold', name: 'max_failed_attempts', type: 'text', inputmode: 'numeric',
      autocomplete: 'off', 'aria-describedby': 'policy-threshold-hint', oninput: () => { this.dirty = true; }});
    this.window = h('input', {id: 'policy-window', name: 'failure_window', type: 'text', autocomplete: 'off',
      spellcheck: 'false', 'aria-describedby': 'policy-window-hint', oninput: () => { this.dirty = true; }});
    this.mode = h('select', {id: 'policy-mode', name: 'mode', 'aria-describedby': 'policy-mode-hint', onchange: () => { this.dirty = true; }},
      h('option', {value: 'enforce'}, 'Enforce: lock the passcode at the threshold'),
      h('option', {value: 'monitor'}, 'Monitor: count and alert, lock nothing'));
    this.error = h('p', {class: 'error', role: 'alert', id: 'policy-error'});
    this.notice = h('p', {class: 'notice', role: 'status', id: 'policy-notice'});
    this.form = h('form', {id: 'policy-form', novalidate: true, onsubmit: (e) => {
      e.preventDefault();
      this.save();
    }},
    h('div', {class: 'field'},
      h('label', {for: 'policy-threshold'}, 'Threshold (failed attempts before the passcode locks)'), this.threshold,
      h('p', {class: 'hint', id: 'policy-threshold-hint'}, 'A whole number.')),
    h('div', {class: 'field'},
      h('label', {for: 'policy-window'}, 'Failure window'), this.window,
      h('p', {class: 'hint', id: 'policy-window-hint'}, 'Failures older than this stop counting, e.g. 1h or 30m; 0 counts every failure since the passcode was generated.')),
    h('div', {class: 'field'},
      h('label', {for: 'policy-mode'}, 'Mode'), this.mode,
      h('p', {class: 'hint', id: 'policy-mode-hint'}, 'Monitor mode shows what the policy would lock before you enforce it.')),
    this.error, this.notice,
    h('div', {class: 'actions'},
      h('button', {type: 'submit', class: 'btn btn-primary', id: 'policy-save'}, 'Save policy'),
      h('button', {type: 'button', class: 'btn', id: 'policy-reset', onclick: () => {
        this.dirty = false;
        this.error.textContent = '';
        if (this.state) this.fill(this.state);
      }}, 'Reset')));
    replace(this.body, this.form);
  }

  update(state) {
    this.state = state;
    if (!this.ctx.canWrite) {
      replace(this.body, h('dl', {class: 'facts', id: 'policy-readonly'},
        h('dt', {}, 'Threshold'), h('dd', {}, `${state.max_failed_attempts} failed attempts`),
        h('dt', {}, 'Failure window'), h('dd', {}, windowWords(state.failure_window)),
        h('dt', {}, 'Mode'), h('dd', {}, state.mode === 'monitor' ? 'monitor (nothing locks)' : 'enforce')));
      return;
    }
    if (!this.dirty) this.fill(state);
  }

  fill(state) {
    this.threshold.value = String(state.max_failed_attempts);
    const ms = parseDuration(state.failure_window);
    this.window.value = Number.isNaN(ms) ? state.failure_window : fmtDuration(ms);
    this.mode.value = state.mode === 'monitor' ? 'monitor' : 'enforce';
  }

  async save() {
    this.error.textContent = '';
    this.notice.textContent = '';
    const raw = this.threshold.value.trim();
    // A number the server can read; the server judges its range.
    if (!/^-?\d+$/.test(raw)) {
      this.error.textContent = 'The threshold must be a whole number of failed attempts.';
      this.threshold.focus();
      return;
    }
    const body = {max_failed_attempts: parseInt(raw, 10), failure_window: this.window.value.trim(), mode: this.mode.value};
    try {
      const res = await this.ctx.client.put(this.ctx.client.site(this.site) + '/lockout-policy', body);
      this.dirty = false;
      this.fill(res.state);
      this.notice.textContent = res.state.mode === 'monitor'
        ? `Saved in monitor mode: ${res.state.max_failed_attempts} failed attempts ${windowWords(res.state.failure_window)} alert, and lock nothing.`
        : `Saved: the passcode locks after ${res.state.max_failed_attempts} failed attempts ${windowWords(res.state.failure_window)}.`;
      if (this.onSaved) this.onSaved(res.state);
    } catch (err) {
      this.error.textContent = 'Not saved. ' + err.message;
    }
  }
}
