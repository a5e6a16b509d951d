// A small client of the items API for setting up and checking what the page did.

export function apiClient(baseUrl, apiToken) {
  async function call(method, path, { body, token = apiToken } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    return { status: res.status, headers: res.headers, data };
  }

  return {
    call,
    async create(item) {
      const r = await call('POST', '/items', { body: item });
      if (r.status !== 201) throw new Error(`POST /items: ${r.status} ${JSON.stringify(r.data)}`);
      return r.data;
    },
    async get(id) {
      return call('GET', `/items/${id}`, { token: '' });
    },
    // Every item, walking rel="next" (bounded).
    async all() {
      const result = [];
      let path = '/items?limit=1000';
      for (let page = 0; path && page < 1000; page++) {
        const r = await call('GET', path, { token: '' });
        if (r.status !== 200) throw new Error(`GET ${path}: ${r.status}`);
        result.push(...r.data);
        const link = r.headers.get('link') || '';
        const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
        path = m ? m[1] : null;
      }
      return result;
    },
  };
}

// Creates `items` with at most `parallel` requests in flight.
export async function createMany(api, items, parallel = 8) {
  const created = [];
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const item = items[next++];
      created.push(await api.create(item));
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker));
  return created;
}
