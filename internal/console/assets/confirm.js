// confirmAction asks before a change that cannot be undone, in the page's
// one modal dialog. It resolves true only when the person confirms.
import {h, replace} from './dom.js';

// extra (optional) is more of the dialog, e.g. fields the caller reads after
// a confirmation.
export function confirmAction({title, text, confirmLabel, extra, danger = true}) {
  const dlg = document.getElementById('confirm');
  return new Promise((resolve) => {
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      if (dlg.open) dlg.close();
      resolve(ok);
    };
    const cancel = h('button', {type: 'button', id: 'confirm-cancel', class: 'btn', onclick: () => finish(false)}, 'Cancel');
    const ok = h('button', {type: 'button', id: 'confirm-ok', class: danger ? 'btn btn-danger' : 'btn btn-primary', onclick: () => finish(true)}, confirmLabel);
    replace(dlg,
      h('h2', {id: 'confirm-title'}, title),
      h('p', {id: 'confirm-text'}, text),
      extra || null,
      h('div', {class: 'actions'}, cancel, ok));
    dlg.addEventListener('close', () => finish(false), {once: true});
    dlg.showModal();
    cancel.focus();
  });
}
