// The failed-attempt monitor: the count against the threshold and window, a
// chart of failures over time, recent attempts with their sources, and the
// sources throttled now.
import {h, s, replace, fmtTime, fmtTimeShort, fmtClock, parseDuration, windowWords, chip, chipStatus, modeChip, sourceWords, OUTCOME_WORDS} from './dom.js';

const BUCKETS = 30;
const RECENT = 15;

// FILTERS are the recent attempts' filter, as GET …/attempts?outcome= takes it.
const FILTERS = [['all', 'All'], ['failed', 'Failed (counted)'], ['outdated', 'Outdated'], ['mistyped', 'Mistyped'], ['succeeded', 'Succeeded']];

export class Monitor {
  // onFilter is told when the person picks another filter.
  constructor(site, onFilter) {
    this.site = site;
    this.filter = 'all';
    this.filterSelect = h('select', {id: 'attempts-filter', 'aria-label': 'Show attempts', onchange: () => {
      this.filter = this.filterSelect.value;
      if (onFilter) onFilter();
    }}, FILTERS.map(([v, label]) => h('option', {value: v}, label)));
    this.summary = h('p', {class: 'monitor-summary', id: 'monitor-summary', 'aria-live': 'polite'});
    this.chart = h('figure', {class: 'chart', id: 'monitor-chart'});
    this.throttled = h('div', {id: 'monitor-throttled'});
    this.recent = h('div', {id: 'monitor-recent'});
    this.updated = h('p', {class: 'hint', id: 'monitor-updated'});
    this.el = h('section', {class: 'card monitor', id: 'monitor', 'aria-labelledby': 'monitor-title'},
      h('h2', {id: 'monitor-title', class: 'card-title'}, 'Failed-attempt monitor ', h('span', {class: 'live-dot', title: 'updating live'}), h('span', {class: 'visually-hidden'}, '(updating live)')),
      this.summary, this.chart,
      h('div', {class: 'monitor-grid'},
        h('div', {}, h('div', {class: 'recent-head'}, h('h3', {}, 'Recent attempts'),
          h('label', {class: 'hint', for: 'attempts-filter'}, 'Show '), this.filterSelect), this.recent),
        h('div', {}, h('h3', {}, 'Throttled sources'), this.throttled)),
      this.updated);
  }

  // update draws the state; attempts are all recent ones (for the chart), and
  // filtered the ones of this.filter unless it is all (fetched with it).
  update(state, attempts, filtered) {
    const now = Date.now();
    const st = chipStatus(state);
    const n = state.failed_attempts || 0;
    const max = state.max_failed_attempts || 0;
    const words = st === 'locked'
      ? (state.status === 'disabled' ? 'locked: the passcode was disabled after too many failed attempts' : 'locked: the threshold is reached')
      : st === 'active' ? `${Math.max(max - n, 0)} more before the passcode locks` : st === 'disabled' ? 'the passcode is disabled' : 'no passcode yet';
    const monitorWords = state.mode === 'monitor' ? ' In monitor mode nothing locks; reaching the threshold only alerts.' : '';
    replace(this.summary, chip(st), modeChip(state), ' ',
      h('span', {class: 'summary-text'}, h('strong', {'data-role': 'count'}, `${n} of ${max}`), ` failed attempts ${windowWords(state.failure_window)}: ${words}.${monitorWords}`));

    const current = attempts.filter((a) => !state.passcode_id || a.passcode_id === state.passcode_id);
    replace(this.chart, this.drawChart(state, current, now));
    this.renderRecent(filtered || attempts, state);
    this.renderThrottled(state.throttled_sources || []);
    this.updated.textContent = 'Updated ' + fmtClock(new Date(now)) + '; refreshes every 2 s while open.';
  }

  // drawChart plots the failures of the current passcode over the failure
  // window (or since generation for a window of 0): bars per interval and
  // the running count against the threshold line.
  drawChart(state, attempts, now) {
    let span = parseDuration(state.failure_window);
    const genAt = state.generated_at ? Date.parse(state.generated_at) : NaN;
    if (!span || Number.isNaN(span)) span = Number.isNaN(genAt) ? 3600e3 : Math.max(now - genAt, 60e3);
    const start = now - span;
    const step = span / BUCKETS;
    const counts = new Array(BUCKETS).fill(0);
    const failures = attempts.filter((a) => a.outcome === 'failed').map((a) => Date.parse(a.at)).filter((t) => t > start && t <= now);
    for (const t of failures) counts[Math.min(BUCKETS - 1, Math.floor((t - start) / step))]++;
    const running = [];
    let sum = 0;
    for (const c of counts) running.push((sum += c));
    const max = state.max_failed_attempts || 1;
    const top = Math.max(max, sum, 1) * 1.15;

    const W = 640;
    const H = 200;
    const L = 36;
    const R = 12;
    const T = 12;
    const B = 28;
    const pw = W - L - R;
    const ph = H - T - B;
    const x = (i) => L + (i / BUCKETS) * pw;
    const y = (v) => T + ph - (v / top) * ph;
    const label = `Failures of the current passcode ${windowWords(state.failure_window)}: ${sum}, threshold ${max}.`;
    const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': label},
      s('title', {}, label));
    // Axes and grid.
    svg.appendChild(s('line', {x1: L, y1: T + ph, x2: L + pw, y2: T + ph, class: 'axis'}));
    svg.appendChild(s('line', {x1: L, y1: T, x2: L, y2: T + ph, class: 'axis'}));
    for (const v of niceTicks(top)) {
      svg.appendChild(s('line', {x1: L, y1: y(v), x2: L + pw, y2: y(v), class: 'grid'}));
      svg.appendChild(s('text', {x: L - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end'}, String(v)));
    }
    // Bars: failures per interval.
    const bw = pw / BUCKETS;
    counts.forEach((c, i) => {
      if (!c) return;
      svg.appendChild(s('rect', {x: x(i) + 1, y: y(c), width: Math.max(bw - 2, 1), height: y(0) - y(c), class: 'bar'},
        s('title', {}, `${c} failed between ${fmtClock(new Date(start + i * step), true)} and ${fmtClock(new Date(start + (i + 1) * step), true)}`)));
    });
    // Running count, a step line.
    let d = `M${x(0)},${y(0)}`;
    running.forEach((v, i) => {
      d += ` L${x(i)},${y(v)} L${x(i + 1)},${y(v)}`;
    });
    svg.appendChild(s('path', {d, class: 'running'}));
    // Threshold.
    svg.appendChild(s('line', {x1: L, y1: y(max), x2: L + pw, y2: y(max), class: 'threshold'}));
    svg.appendChild(s('text', {x: L + pw - 4, y: y(max) - 5, class: 'threshold-label', 'text-anchor': 'end'}, `threshold ${max}`));
    // Time labels.
    for (const i of [0, BUCKETS / 2, BUCKETS]) {
      const t = new Date(start + i * step);
      svg.appendChild(s('text', {x: x(i), y: H - 8, class: 'tick', 'text-anchor': i === 0 ? 'start' : i === BUCKETS ? 'end' : 'middle'},
        i === BUCKETS ? 'now' : span <= 600e3 ? fmtClock(t, true) : fmtClock(t)));
    }
    return [svg, h('figcaption', {class: 'legend'},
      h('span', {class: 'key key-bar'}), ' failures per interval  ',
      h('span', {class: 'key key-running'}), ' running count  ',
      h('span', {class: 'key key-threshold'}), ' lockout threshold')];
  }

  renderRecent(attempts, state) {
    if (!attempts.length) {
      replace(this.recent, h('p', {class: 'muted'}, this.filter !== 'all' ? 'No such attempts.' : 'No attempts yet.'));
      return;
    }
    replace(this.recent, h('table', {class: 'table compact', id: 'attempts'},
      h('thead', {}, h('tr', {},
        h('th', {scope: 'col'}, 'Time'), h('th', {scope: 'col'}, 'Outcome'), h('th', {scope: 'col'}, 'Source'),
        h('th', {scope: 'col', title: 'failures counted in the window when this one failed'}, 'Count'))),
      h('tbody', {}, attempts.slice(0, RECENT).map((a) => h('tr', {'data-outcome': a.outcome},
        h('td', {}, fmtTimeShort(a.at)),
        h('td', {}, h('span', {class: 'outcome outcome-' + a.outcome}, OUTCOME_WORDS[a.outcome] || a.outcome),
          state.passcode_id && a.passcode_id !== state.passcode_id ? h('span', {class: 'hint'}, ' (previous passcode)') : null),
        h('td', {title: a.source && a.source.user_agent ? a.source.user_agent : null}, sourceWords(a.source)),
        h('td', {}, a.outcome === 'failed' && a.failed_attempts ? String(a.failed_attempts) : '—'))))));
  }

  renderThrottled(list) {
    if (!list.length) {
      replace(this.throttled, h('p', {class: 'muted'}, 'No source is throttled.'));
      return;
    }
    replace(this.throttled, h('ul', {class: 'throttled', id: 'throttled'}, list.map((t) => h('li', {},
      h('code', {}, t.key), ' ', t.until ? h('span', {}, 'until ', fmtTime(t.until)) : h('span', {}, 'until the passcode is regenerated')))));
  }
}

function niceTicks(top) {
  const raw = top / 4;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw) || raw;
  const ticks = [];
  for (let v = 0; v <= top; v += Math.max(1, Math.round(step))) ticks.push(v);
  return ticks;
}
