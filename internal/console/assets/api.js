// The HTTP API client. The token goes only into the Authorization header of
// same-origin requests; problem documents become ApiErrors whose message is
// words for a person, never the raw JSON.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Words for problems that say little on their own; the server's detail is
// added after them.
const CODE_WORDS = {
  unauthorized: 'The token was refused: it is unknown, revoked or mistyped.',
  forbidden: 'This token\u2019s role does not allow that.',
  not_found: 'Not found, or not among this token\u2019s sites.',
  not_active: 'There is no active passcode to do that with.',
  not_generated: 'No passcode has been generated for this site yet.',
  busy: 'The service is busy.',
  unavailable: 'The service could not complete the request; check the state before trying again.',
  not_caught_up: 'The service is catching up.',
  upgrade_required: 'This site has events from a newer version of enrollgate; upgrade the service.',
  timeout: 'The service took too long to answer.',
  internal: 'The service had an internal error.',
};

// problemMessage turns a problem document into a sentence or two.
export function problemMessage(status, doc, retryAfter) {
  let msg = '';
  if (doc && typeof doc === 'object') {
    const words = CODE_WORDS[doc.code];
    const detail = typeof doc.detail === 'string' ? doc.detail : '';
    const title = typeof doc.title === 'string' ? doc.title : '';
    if (words && detail && doc.code !== 'unauthorized' && doc.code !== 'not_found') {
      msg = words + ' ' + capitalise(detail);
    } else if (words) {
      msg = words;
    } else if (detail) {
      msg = capitalise(detail);
    } else {
      msg = title;
    }
    if (!msg.match(/[.!?]$/)) msg += '.';
    if (doc.request_id && status >= 500) msg += ` (Request ${doc.request_id}.)`;
  }
  if (!msg) msg = `The service answered ${status} without an explanation.`;
  if (retryAfter) msg += ` Try again in ${retryAfter} s.`;
  return msg;
}

function capitalise(s) {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

// Client keeps the highest event sequence its writes returned, and passes it
// as ?min_seq on reads so that the console reads its own writes.
export class Client {
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
    this.minSeq = 0;
  }

  async request(method, path, body, {read = method === 'GET', quiet401 = false} = {}) {
    let url = path;
    if (read && this.minSeq > 0) {
      url += (url.includes('?') ? '&' : '?') + 'min_seq=' + this.minSeq;
    }
    const headers = {Accept: 'application/json, application/problem+json', Authorization: 'Bearer ' + this.token};
    const init = {method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error', referrerPolicy: 'no-referrer'};
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch {
      throw new ApiError(0, 'network', 'The service did not answer. Check that it is running and reachable, then try again.');
    }
    let doc = null;
    if (res.status !== 204 && (res.headers.get('Content-Type') || '').includes('json')) {
      try {
        doc = await res.json();
      } catch {
        doc = null;
      }
    }
    if (!res.ok) {
      const err = new ApiError(res.status, (doc && doc.code) || String(res.status),
        problemMessage(res.status, doc, res.headers.get('Retry-After')));
      if (res.status === 401 && !quiet401 && this.onUnauthorized) this.onUnauthorized(err);
      throw err;
    }
    if (doc && typeof doc.seq === 'number' && !read) this.minSeq = Math.max(this.minSeq, doc.seq);
    return doc;
  }

  get(path, opts) { return this.request('GET', path, undefined, opts); }
  post(path, body) { return this.request('POST', path, body === undefined ? {} : body); }
  put(path, body) { return this.request('PUT', path, body); }
  del(path) { return this.request('DELETE', path); }

  site(site) { return '/v1/sites/' + encodeURIComponent(site); }
}
