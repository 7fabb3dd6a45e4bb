// DOM helpers. Everything from the API reaches the page through textContent
// or attributes, never parsed as markup: the CSP (Trusted Types) would refuse
// an HTML string anyway.

const SVG_NS = 'http://www.w3.org/2000/svg';

// h builds an element: h('button', {class: 'x', onclick: fn}, 'text', child).
// Attributes starting with "on" become listeners; false/null ones are left out.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s builds an SVG element the same way.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.setAttribute('class', v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// replace puts children in place of el's children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// fmtTime shows an RFC 3339 time in the viewer's locale and time zone; the
// element's datetime keeps the exact value.
export function fmtTime(iso) {
  if (!iso) return h('span', {class: 'muted'}, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, iso);
  return h('time', {datetime: iso, title: iso}, fmtDate(d));
}

// fmtTimeShort is fmtTime for tables: the time of day for today, else the
// date too.
export function fmtTimeShort(iso) {
  if (!iso) return h('span', {class: 'muted'}, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, iso);
  const today = new Date().toDateString() === d.toDateString();
  const text = today
    ? d.toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23'})
    : d.toLocaleString(undefined, {month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23'});
  return h('time', {datetime: iso, title: fmtDate(d)}, text);
}

export function fmtDate(d) {
  return d.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short',
  });
}

export function fmtClock(d, seconds) {
  return d.toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit', second: seconds ? '2-digit' : undefined, hourCycle: 'h23'});
}

// parseDuration reads a Go duration ("1h0m0s", "30m", "0s", "1.5h") into
// milliseconds; NaN when it is not one.
export function parseDuration(str) {
  if (typeof str !== 'string') return NaN;
  if (str === '0' || str === '0s') return 0;
  const units = {h: 3600e3, m: 60e3, s: 1e3, ms: 1, us: 1e-3, 'µs': 1e-3, ns: 1e-6};
  const re = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/gy;
  let total = 0;
  let m;
  let end = 0;
  while ((m = re.exec(str)) !== null) {
    total += parseFloat(m[1]) * units[m[2]];
    end = re.lastIndex;
  }
  return end === str.length && end > 0 ? total : NaN;
}

// fmtDuration writes milliseconds the way the API accepts them: "1h30m",
// "30m", "45s"; "0" for none.
export function fmtDuration(ms) {
  if (!ms) return '0';
  let rest = Math.round(ms / 1000);
  const hrs = Math.floor(rest / 3600);
  rest -= hrs * 3600;
  const mins = Math.floor(rest / 60);
  const secs = rest - mins * 60;
  return (hrs ? hrs + 'h' : '') + (mins ? mins + 'm' : '') + (secs ? secs + 's' : '');
}

// windowWords says a failure window in words: "in the last 1h", or "since
// the passcode was generated" for a window of 0.
export function windowWords(goDuration) {
  const ms = parseDuration(goDuration);
  if (ms === 0) return 'since the passcode was generated';
  if (Number.isNaN(ms)) return 'in the current window';
  return 'in the last ' + fmtDuration(ms);
}

// chipStatus is the status a site's chip shows: none, active, disabled,
// expired, used_up, or locked (the threshold was reached, whether or not the
// disable is stored).
export function chipStatus(state) {
  if (!state || !state.status) return 'none';
  if (state.locked || (state.status === 'disabled' && state.disabled_reason === 'lockout')) return 'locked';
  return state.status;
}

const CHIP_WORDS = {none: 'No passcode', active: 'Active', disabled: 'Disabled', locked: 'Locked', expired: 'Expired', used_up: 'Used up'};

export function chip(status) {
  return h('span', {class: 'chip chip-' + status, 'data-status': status}, CHIP_WORDS[status] || status);
}

// modeChip marks a site whose lockout policy only watches: failures are
// counted, nothing locks. Nothing for enforce.
export function modeChip(state) {
  if (!state || state.mode !== 'monitor') return null;
  return h('span', {class: 'chip chip-monitor', 'data-mode': 'monitor', title: 'Failures are counted; reaching the threshold alerts but locks nothing'}, 'Monitor mode');
}

// OUTCOME_WORDS says an attempt's outcome; excused ones did not count toward
// the site's lockout.
export const OUTCOME_WORDS = {
  failed: 'Wrong passcode',
  succeeded: 'Enrolled',
  outdated: 'Outdated passcode (not counted)',
  mistyped: 'Mistyped (not counted)',
};

// attemptsMeter shows failed attempts against the threshold.
export function attemptsMeter(state) {
  const max = state.max_failed_attempts || 0;
  const n = state.failed_attempts || 0;
  return h('span', {class: 'attempts'},
    h('meter', {min: 0, max: max || 1, low: Math.ceil(max / 2), high: Math.max(max - 1, 1), optimum: 0, value: n,
      'aria-label': `${n} of ${max} failed attempts`}),
    h('span', {class: 'attempts-text'}, `${n} / ${max}`));
}

// sourceWords is one line for an attempt's source.
export function sourceWords(src) {
  if (!src) return 'anonymous';
  const parts = [];
  if (src.ip) parts.push(src.ip);
  if (src.device_id) parts.push('device ' + src.device_id);
  if (src.platform) parts.push(src.platform);
  return parts.length ? parts.join(' · ') : 'anonymous';
}

// copyText copies to the clipboard; false when the browser refuses.
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
