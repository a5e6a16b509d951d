// Front page of the items stack: live status of every tier, the list of items,
// and an editing mode driven by the API token.
//
// The list stays fast whatever the size of the table: it shows the first page
// of /items at once and asks for the next one (keyset pagination, the
// `Link: rel="next"` of docs/api.md) only when the person scrolls near its end
// (IntersectionObserver on the "Charger plus" row) or presses "Charger plus"
// (the way without IntersectionObserver). Without a scroll, at most two pages
// are requested (a second one only when the first does not fill the screen),
// and never two at once.
//
// Safe by construction: every piece of data enters the page as text
// (textContent or text nodes), never as HTML; no eval, no inline script or
// style, so the strict Content-Security-Policy `default-src 'self'` holds.
//
// Concurrent edits (API v1.1, docs/api.md "Entity tags"): every PUT and DELETE
// carries `If-Match` with the ETag of the version the person saw. Lists carry
// no ETag, so opening the edit form or the delete confirmation first reads the
// item (GET /items/{id}); a 412 says someone else changed it meanwhile: the
// page says so, shows the current version and keeps its new ETag.

const STATUS_INTERVAL_MS = 5000;
const STATUS_TIMEOUT_MS = 4000;
const REQUEST_TIMEOUT_MS = 15000;
const PAGE_LIMIT = 100;
const PAGES_WITHOUT_SCROLL = 2; // pages requested at most until the person scrolls (or asks)
const NEAR_END_MARGIN = '0px 0px 50% 0px'; // "near the end": half a screen below the viewport
const TOKEN_KEY = 'items.apiToken';

const byId = (id) => document.getElementById(id);

const dateFormat = new Intl.DateTimeFormat('fr-FR', { dateStyle: 'long', timeStyle: 'short' });
const timeFormat = new Intl.DateTimeFormat('fr-FR', { timeStyle: 'medium' });
const numberFormat = new Intl.NumberFormat('fr-FR');

/* ------------------------------------------------------------------ DOM */

// Builds an element. Children that are strings become text nodes (never HTML).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'hidden') node.hidden = true;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function setText(node, text) {
  node.textContent = text;
}

function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateFormat.format(date);
}

function countLabel(n) {
  if (n === 0) return 'aucun élément';
  return `${numberFormat.format(n)} ${n === 1 ? 'élément' : 'éléments'}`;
}

/* ---------------------------------------------------------------- token */

let memoryToken = ''; // used only when sessionStorage is unavailable

const token = {
  get() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch {
      return memoryToken;
    }
  },
  set(value) {
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch {
      memoryToken = value;
    }
  },
  clear() {
    memoryToken = '';
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* nothing stored */
    }
  },
};

const isEditing = () => token.get() !== '';

/* ------------------------------------------------------------------ API */

// Performs one request and never throws. The result says what happened:
// { ok, status (0 when no HTTP answer), network, timeout, data, error, requestId, headers, etag }.
// `ifMatch`: the entity tag a write is conditional on (sent as `If-Match`).
async function api(method, path, { body, auth = false, ifMatch, timeout = REQUEST_TIMEOUT_MS } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json; charset=utf-8';
  if (auth) headers.Authorization = `Bearer ${token.get()}`;
  if (ifMatch) headers['If-Match'] = ifMatch;
  const result = { ok: false, status: 0, network: false, timeout: false, data: null, error: '', requestId: '', headers: null, etag: '' };
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'same-origin',
      redirect: 'error',
      signal: AbortSignal.timeout(timeout),
    });
  } catch (err) {
    result.network = true;
    result.timeout = err && err.name === 'TimeoutError';
    return result;
  }
  result.status = response.status;
  result.ok = response.ok;
  result.headers = response.headers;
  result.requestId = response.headers.get('X-Request-ID') || '';
  result.etag = response.headers.get('ETag') || '';
  const type = response.headers.get('Content-Type') || '';
  if (response.status !== 204 && /^application\/json\s*(;|$)/i.test(type)) {
    try {
      result.data = await response.json();
    } catch {
      result.data = null;
    }
  } else {
    try {
      await response.arrayBuffer(); // drain the body
    } catch {
      /* ignore */
    }
  }
  if (!result.ok && result.data && typeof result.data.error === 'string') result.error = result.data.error;
  return result;
}

// The API's own reason, without a final period (the sentence adds one).
function apiReason(r) {
  return (r.error || 'données invalides').replace(/[\s.]+$/, '');
}

// French sentences for a failed request. For a write they add that nothing
// was saved; for a read (`write` false) that the list comes back by itself
// when the cause is an outage. A server-side failure ends with the request id.
function describeFailure(r, { write = false } = {}) {
  const unsaved = write ? ' Rien n’a été enregistré.' : '';
  const outage = write ? ' Réessayez dans un instant.' : ' La liste se rechargera d’elle-même dès son retour.';
  const ref = r.requestId && (r.status >= 500 || r.network) ? ` (référence : ${r.requestId})` : '';
  if (r.network) {
    if (r.timeout && write) return 'Le serveur ne répond pas (délai dépassé) : l’enregistrement a peut-être eu lieu, actualisez la liste pour le vérifier.';
    return `${r.timeout ? 'Le serveur ne répond pas (délai dépassé).' : 'Impossible de joindre le serveur.'}${unsaved}${outage}`;
  }
  switch (r.status) {
    case 400:
      return `Requête refusée par l’API : ${apiReason(r)}.${unsaved}`;
    case 401:
      return `Jeton refusé : le jeton d’API est absent ou incorrect.${unsaved} Vérifiez le jeton (bouton « Quitter le mode édition », puis collez le bon jeton).`;
    case 403:
      return `Les modifications sont désactivées sur ce serveur : aucun jeton d’API n’y est configuré.${unsaved}`;
    case 404:
      return `Cet élément n’existe plus : il a peut-être été supprimé entre-temps.${unsaved}`;
    case 412:
      return `Cet élément a été modifié entre-temps par quelqu’un d’autre.${unsaved}`;
    case 413:
      return `Le contenu envoyé est trop volumineux (128 Kio au maximum).${unsaved}`;
    case 415:
      return `Format de requête refusé par l’API.${unsaved}`;
    case 502:
    case 504:
      return `L’API ne répond pas (workers FastCGI indisponibles).${unsaved}${outage}${ref}`;
    case 503:
      return `La base de données est indisponible.${unsaved}${outage}${ref}`;
    default:
      return `Erreur inattendue du serveur (HTTP ${r.status}).${unsaved} ${write ? 'Réessayez' : 'Utilisez « Actualiser la liste » pour réessayer'}.${ref}`;
  }
}

// describeFailure for a write, `verb` saying what did not happen ('enregistré', 'supprimé').
function describeWriteFailure(r, verb) {
  return describeFailure(r, { write: true }).replace('Rien n’a été enregistré.', `Rien n’a été ${verb}.`);
}

// A write refused with 412: someone else changed the item since the person read it.
function conflictMessage(verb, shown) {
  const current = shown ? 'Voici sa version actuelle.' : 'Sa version actuelle n’a pas pu être chargée : réessayez dans un instant.';
  return `Cet élément a été modifié entre-temps par quelqu’un d’autre : rien n’a été ${verb}. ${current}`;
}

// Follows RFC 8288: returns the same-origin /items target of rel="next", or null.
function nextLink(header) {
  if (!header) return null;
  for (const link of header.split(',')) {
    const match = /^\s*<([^>]*)>(.*)$/.exec(link);
    if (!match) continue;
    const isNext = match[2].split(';').some((param) => {
      const pm = /^\s*rel\s*=\s*"?([^"]*)"?\s*$/i.exec(param);
      return pm !== null && pm[1].toLowerCase().split(/\s+/).includes('next');
    });
    if (!isNext) continue;
    const url = new URL(match[1], window.location.href);
    if (url.origin !== window.location.origin || url.pathname !== '/items') return null;
    return url.pathname + url.search;
  }
  return null;
}

// Which form field an API validation message is about, if exactly one.
function fieldOfMessage(message) {
  const text = message.toLowerCase();
  const fields = [];
  if (/\bname\b|\bnom\b/.test(text)) fields.push('name');
  if (/\bdescription\b/.test(text)) fields.push('description');
  return fields.length === 1 ? fields[0] : null;
}

/* --------------------------------------------------------------- status */

const statusUi = {
  section: byId('status'),
  front: byId('tier-front'),
  api: byId('tier-api'),
  db: byId('tier-db'),
  message: byId('status-message'),
  time: byId('status-time'),
};
let statusKey = '';
let statusTimer = 0;
let statusHealthy = false;

const BADGE_TEXT = { ok: 'OK', ko: 'KO', unknown: 'inconnu' };

function statusFrom(r) {
  if (r.network) {
    return {
      level: 'error', front: 'ko', api: 'unknown', db: 'unknown',
      message: r.timeout
        ? 'Le serveur ne répond pas. Nouvelle tentative automatique dans quelques secondes.'
        : 'Le serveur est injoignable (front, API et base de données hors d’atteinte). Nouvelle tentative automatique dans quelques secondes.',
    };
  }
  const d = r.data && typeof r.data === 'object' ? r.data : {};
  if (r.status === 200 && d.status === 'OK' && d.database_connection === 'OK') {
    return { level: 'ok', front: 'ok', api: 'ok', db: 'ok', message: 'Tout fonctionne : le front, l’API et la base de données répondent.' };
  }
  if (r.status === 503 && d.database_connection === 'KO') {
    return {
      level: 'error', front: 'ok', api: 'ok', db: 'ko',
      message: 'La base de données est indisponible : les éléments ne peuvent être ni lus ni modifiés pour le moment. La page reprendra d’elle-même dès son retour.',
    };
  }
  if (r.status === 502 || r.status === 504) {
    return {
      level: 'error', front: 'ok', api: 'ko', db: 'unknown',
      message: 'L’API ne répond pas (workers FastCGI arrêtés ou injoignables). Nouvelle tentative automatique dans quelques secondes.',
    };
  }
  return {
    level: 'error', front: 'ok', api: 'ko', db: 'unknown',
    message: `L’API a donné une réponse inattendue (HTTP ${r.status}). Nouvelle tentative automatique dans quelques secondes.`,
  };
}

function renderStatus(state) {
  setText(statusUi.time, timeFormat.format(new Date()));
  statusUi.time.setAttribute('datetime', new Date().toISOString());
  const key = [state.level, state.front, state.api, state.db, state.message].join('|');
  if (key === statusKey) return; // unchanged: keep the live region quiet
  statusKey = key;
  statusUi.section.dataset.state = state.level;
  for (const tier of ['front', 'api', 'db']) {
    statusUi[tier].dataset.state = state[tier];
    setText(statusUi[tier], BADGE_TEXT[state[tier]]);
  }
  setText(statusUi.message, state.message);
}

// One check at a time; each check schedules the next one.
let statusChecking = false;
async function checkStatus() {
  if (statusChecking) return;
  statusChecking = true;
  clearTimeout(statusTimer);
  try {
    const state = statusFrom(await api('GET', '/status', { timeout: STATUS_TIMEOUT_MS }));
    renderStatus(state);
    const recovered = state.level === 'ok' && !statusHealthy;
    statusHealthy = state.level === 'ok';
    if (recovered && listState === 'error') loadItems();
    else if (recovered && more.failed) loadMore(); // the page that failed, once (not an automatic walk)
  } finally {
    statusChecking = false;
    statusTimer = setTimeout(checkStatus, STATUS_INTERVAL_MS);
  }
}

// A request failed in a way that may mean a tier is down: look now.
function noteFailure(r) {
  if (r.network || r.status >= 500) checkStatus();
}

/* ---------------------------------------------------------------- items */

const itemsUi = {
  list: byId('items-list'),
  state: byId('items-state'),
  count: byId('items-count'),
  title: byId('items-title'),
  reload: byId('items-reload'),
  more: byId('items-more'),
  moreButton: byId('items-more-button'),
  moreError: byId('items-more-error'),
  end: byId('items-end'),
};
const items = new Map(); // id -> item, the items loaded so far (and created or edited here)
const etags = new Map(); // id -> ETag of the version shown, when known (lists carry none)
const reading = new Set(); // ids whose current version is being read before an edit or delete
let listState = 'loading'; // loading | ready | error (of the first page)
let loadGeneration = 0;

// The pages after the first one.
const more = {
  next: null, // path of the next page (rel="next"), null once the last page is in
  seen: new Set(), // pages requested in this load: a server repeating a link cannot loop us
  inFlight: false, // one page request at a time
  failed: false, // the last page request failed (its error is shown under the list)
  sinceScroll: 0, // pages requested since the last scroll (or press of "Charger plus")
  near: false, // the "Charger plus" row was near the viewport at the last observation
  // Items created here while more pages follow: shown at once, at the end of
  // the list (ids ascend); the page that holds one later goes before it and
  // does not show it twice.
  ahead: new Set(),
};

function sortedItems() {
  return [...items.values()].sort((a, b) => a.id - b.id);
}

// Heading count (what is loaded, "et plus" while more pages follow), and the
// state line, a live region, when a page came in or the list is or stops
// being empty (after a create or delete, only the edit notice speaks).
function updateCount({ loaded = false } = {}) {
  const following = listState === 'ready' && more.next !== null;
  setText(itemsUi.count, listState === 'ready' || items.size > 0 ? `(${countLabel(items.size)}${following ? ' et plus' : ''})` : '');
  if (listState !== 'ready') return;
  const wasEmpty = itemsUi.state.dataset.state === 'empty';
  itemsUi.state.dataset.state = items.size === 0 ? 'empty' : 'ready';
  if (items.size === 0) setText(itemsUi.state, 'Aucun élément pour le moment.');
  else if (loaded) setText(itemsUi.state, `${items.size === 1 ? '1 élément chargé' : `${countLabel(items.size)} chargés`}${following ? ', d’autres suivent' : ''}.`);
  else if (wasEmpty) setText(itemsUi.state, '');
}

// The first page; "Actualiser la liste" and the recovery after an outage
// start here again (the pages already shown are dropped).
async function loadItems() {
  const generation = ++loadGeneration;
  listState = 'loading';
  more.inFlight = false;
  more.failed = false;
  showMoreRow();
  itemsUi.list.setAttribute('aria-busy', 'true');
  itemsUi.state.dataset.state = 'loading';
  setText(itemsUi.state, 'Chargement des éléments…');
  const url = `/items?limit=${PAGE_LIMIT}`;
  const r = await api('GET', url);
  if (generation !== loadGeneration) return; // a newer load took over
  if (!r.ok || !Array.isArray(r.data)) {
    listState = 'error';
    itemsUi.list.setAttribute('aria-busy', 'false');
    itemsUi.state.dataset.state = 'error';
    const why = r.ok ? 'Réponse inattendue de l’API. Utilisez « Actualiser la liste » pour réessayer.' : describeFailure(r);
    setText(itemsUi.state, `Impossible de charger les éléments. ${why}`);
    noteFailure(r);
    return;
  }
  items.clear();
  etags.clear(); // the list's versions come without tags
  more.ahead.clear();
  more.seen = new Set([url]);
  more.sinceScroll = 1;
  for (const item of r.data) {
    if (item && Number.isInteger(item.id)) items.set(item.id, item);
  }
  setNext(r);
  listState = 'ready';
  renderList();
  updateCount({ loaded: true });
  itemsUi.list.setAttribute('aria-busy', 'false');
  showMoreRow();
}

// The next page, if any, unless one is already on its way.
async function loadMore() {
  if (listState !== 'ready' || more.next === null || more.inFlight) return;
  const generation = loadGeneration;
  const url = more.next;
  more.inFlight = true;
  more.sinceScroll += 1;
  more.seen.add(url);
  itemsUi.list.setAttribute('aria-busy', 'true');
  const r = await api('GET', url);
  if (generation !== loadGeneration) return; // the list was reloaded meanwhile
  more.inFlight = false;
  itemsUi.list.setAttribute('aria-busy', 'false');
  if (!r.ok || !Array.isArray(r.data)) {
    more.failed = true;
    const why = r.ok ? 'Réponse inattendue de l’API.' : describeFailure(r);
    setText(itemsUi.moreError, `Impossible de charger la suite de la liste. ${why}`);
    itemsUi.moreError.hidden = false;
    noteFailure(r);
    return;
  }
  more.failed = false;
  itemsUi.moreError.hidden = true;
  setText(itemsUi.moreError, '');
  appendPage(r.data);
  setNext(r);
  updateCount({ loaded: true });
  showMoreRow();
}

// Keeps the next page's path, unless the server sends one already requested.
function setNext(r) {
  const next = nextLink(r.headers.get('Link'));
  more.next = next !== null && !more.seen.has(next) ? next : null;
}

// Adds a page (ascending ids) to the list without touching the cards shown.
function appendPage(page) {
  let fragment = document.createDocumentFragment();
  let anchor = null; // the first item created here with a greater id, if any
  const flush = () => {
    itemsUi.list.insertBefore(fragment, anchor);
    fragment = document.createDocumentFragment();
  };
  for (const item of page) {
    if (!item || !Number.isInteger(item.id)) continue;
    if (items.has(item.id)) { // created here and already shown
      more.ahead.delete(item.id);
      continue;
    }
    const before = aheadAfter(item.id);
    if (before !== anchor) {
      flush();
      anchor = before;
    }
    items.set(item.id, item);
    fragment.append(renderItem(item));
  }
  flush();
}

// The <li> of the smallest id created here that is greater than `id`, or null.
function aheadAfter(id) {
  let best = null;
  for (const other of more.ahead) {
    if (other > id && (best === null || other < best)) best = other;
  }
  return best === null ? null : itemsUi.list.querySelector(`li[data-id="${best}"]`);
}

// The row under the list: "Charger plus" while more pages follow, else the
// end of the list. A keyboard user on the button stays on that row.
function showMoreRow() {
  const following = listState === 'ready' && more.next !== null;
  const ended = listState === 'ready' && more.next === null && more.seen.size > 1; // after a walk
  const hadFocus = document.activeElement === itemsUi.moreButton;
  itemsUi.more.hidden = !following;
  itemsUi.end.hidden = !ended;
  if (!following) {
    itemsUi.moreError.hidden = true;
    setText(itemsUi.moreError, '');
  }
  if (hadFocus && ended) itemsUi.end.focus();
  // A fresh observation of the row, now that the list has its new length:
  // the observer says whether it is still near the viewport.
  more.near = false;
  if (observer) {
    observer.unobserve(itemsUi.more);
    if (following) observer.observe(itemsUi.more);
  }
}

// Loads the next page by itself only while the row is near the viewport and
// fewer than PAGES_WITHOUT_SCROLL pages were requested since the last scroll.
function maybeLoadMore() {
  if (more.near && more.sinceScroll < PAGES_WITHOUT_SCROLL && !more.failed) loadMore();
}

const observer = typeof window.IntersectionObserver === 'function'
  ? new IntersectionObserver((entries) => {
    more.near = entries[entries.length - 1].isIntersecting;
    maybeLoadMore();
  }, { rootMargin: NEAR_END_MARGIN })
  : null; // without it, "Charger plus" is the way to the next page

// A scroll counts once the list has grown: one made while a page is on its
// way does not allow another page after it.
window.addEventListener('scroll', () => {
  if (more.inFlight) return;
  more.sinceScroll = 0;
  maybeLoadMore();
}, { passive: true });

// One press, one page (the observer adds none after it until a scroll);
// a press while a page is on its way does nothing.
itemsUi.moreButton.addEventListener('click', () => {
  if (more.inFlight) return;
  more.sinceScroll = PAGES_WITHOUT_SCROLL - 1;
  loadMore();
});

function renderList() {
  const fragment = document.createDocumentFragment();
  for (const item of sortedItems()) fragment.append(renderItem(item));
  itemsUi.list.replaceChildren(fragment);
  updateCount();
}

// The <li> of one item, in reading mode.
function renderItem(item) {
  const li = el('li', { class: 'item', 'data-id': item.id });
  fillItemView(li, item);
  return li;
}

// `alert`: a message shown at the bottom of the card (e.g. after a refused write).
function fillItemView(li, item, { alert } = {}) {
  const nameId = `item-${item.id}-name`;
  const hasDescription = typeof item.description === 'string' && item.description !== '';
  const article = el('article', { class: 'item-card', 'aria-labelledby': nameId },
    el('h3', { id: nameId, class: 'item-name' }, String(item.name)),
    hasDescription
      ? el('p', { class: 'item-description' }, item.description)
      : el('p', { class: 'item-description item-description-empty' }, 'Pas de description.'),
    el('p', { class: 'item-meta' }, 'Ajouté le ', el('time', { datetime: item.created_at }, formatDate(item.created_at))),
  );
  if (isEditing()) article.append(itemActions(li, item));
  if (alert) article.append(el('p', { class: 'form-error', role: 'alert' }, alert));
  li.replaceChildren(article);
}

function itemActions(li, item) {
  const label = (verb) => [verb, el('span', { class: 'visually-hidden' }, ` « ${item.name} »`)];
  const edit = el('button', { type: 'button', class: 'secondary', 'data-action': 'edit' }, ...label('Modifier'));
  const remove = el('button', { type: 'button', class: 'danger', 'data-action': 'delete' }, ...label('Supprimer'));
  edit.addEventListener('click', () => startEdit(li, item));
  remove.addEventListener('click', () => openDeleteConfirm(li, item));
  const actions = el('div', { class: 'item-actions' }, edit, remove);
  return actions;
}

function focusItemButton(id, action) {
  const li = itemsUi.list.querySelector(`li[data-id="${Number(id)}"]`);
  const button = li && li.querySelector(`button[data-action="${action}"]`);
  if (button) button.focus();
}

// Keeps the ETag a single-item answer (GET, POST, PUT) carries for that item.
function keepTag(id, r) {
  if (r.etag) etags.set(id, r.etag);
  else etags.delete(id);
}

function sameVersion(a, b) {
  return a.name === b.name && (a.description ?? null) === (b.description ?? null) && a.created_at === b.created_at;
}

// Reads the item as stored now, with its ETag, before an edit or a delete and
// after a 412. Returns { item } (kept in `items` and `etags`), { gone: true }
// for a 404, or { failure: '<French sentences>' } (`verb`: what will not happen).
async function readCurrent(id, verb) {
  const r = await api('GET', `/items/${id}`);
  if (r.ok && r.data && r.data.id === id && r.etag) {
    items.set(id, r.data);
    keepTag(id, r);
    return { item: r.data };
  }
  if (r.status === 404) return { gone: true };
  noteFailure(r);
  if (r.ok) return { failure: `Réponse inattendue de l’API (élément sans ETag) : rien n’a été ${verb}. Utilisez « Actualiser la liste » pour réessayer.` };
  return { failure: `Impossible de lire la version actuelle de cet élément. ${describeWriteFailure(r, verb)}` };
}

// The item no longer exists: its card goes, the notice says why.
function forgetItem(li, id, text) {
  items.delete(id);
  etags.delete(id);
  more.ahead.delete(id);
  li.remove();
  updateCount();
  announce(text);
  itemsUi.title.focus();
}

/* ---------------------------------------------------------------- forms */

// A create/edit form. `submit(body)` performs the request and returns the API result.
// `onConflict()`, on a 412, shows the current version and resolves with the message
// for the form ('' when the form is gone).
function buildItemForm({ prefix, title, submitLabel, initial, submit, onDone, onCancel, onConflict }) {
  const nameId = `${prefix}-name`;
  const descId = `${prefix}-description`;
  const nameError = el('p', { id: `${nameId}-error`, class: 'field-error', hidden: true });
  const descError = el('p', { id: `${descId}-error`, class: 'field-error', hidden: true });
  const formError = el('p', { class: 'form-error', role: 'alert', hidden: true });
  const nameInput = el('input', {
    id: nameId, name: 'name', type: 'text', autocomplete: 'off', 'aria-required': 'true',
    'aria-describedby': `${nameId}-hint ${nameId}-error`,
  });
  nameInput.value = initial.name;
  const descInput = el('textarea', {
    id: descId, name: 'description', rows: 3,
    'aria-describedby': `${descId}-hint ${descId}-error`,
  });
  descInput.value = initial.description ?? '';
  const submitButton = el('button', { type: 'submit' }, submitLabel);
  const form = el('form', { class: 'item-form', novalidate: true, 'aria-label': title },
    el('div', { class: 'field' },
      el('label', { for: nameId }, 'Nom'),
      el('p', { id: `${nameId}-hint`, class: 'help' }, 'Obligatoire, 255 caractères au maximum.'),
      nameInput, nameError),
    el('div', { class: 'field' },
      el('label', { for: descId }, 'Description'),
      el('p', { id: `${descId}-hint`, class: 'help' }, 'Facultative. Laissez vide pour aucune description.'),
      descInput, descError),
    formError,
    el('div', { class: 'row form-actions' }, submitButton),
  );
  if (onCancel) {
    const cancel = el('button', { type: 'button', class: 'secondary' }, 'Annuler');
    cancel.addEventListener('click', onCancel);
    form.querySelector('.form-actions').append(cancel);
    form.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        onCancel();
      }
    });
  }

  const fields = { name: [nameInput, nameError], description: [descInput, descError] };
  function clearErrors() {
    for (const [input, error] of Object.values(fields)) {
      input.removeAttribute('aria-invalid');
      error.hidden = true;
      setText(error, '');
    }
    formError.hidden = true;
    setText(formError, '');
  }
  function showFieldError(field, text) {
    const [input, error] = fields[field];
    input.setAttribute('aria-invalid', 'true');
    setText(error, text);
    error.hidden = false;
    input.focus();
  }
  function showFormError(text) {
    setText(formError, text);
    formError.hidden = false;
  }

  let busy = false;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy) return;
    busy = true;
    clearErrors();
    submitButton.disabled = true;
    form.setAttribute('aria-busy', 'true');
    const body = { name: nameInput.value, description: descInput.value === '' ? null : descInput.value };
    const r = await submit(body);
    const conflict = r.status === 412 && onConflict ? await onConflict() : null;
    busy = false;
    submitButton.disabled = false;
    form.setAttribute('aria-busy', 'false');
    if (r.ok) {
      onDone(r.data, { form, nameInput, descInput, clearErrors });
      return;
    }
    if (conflict !== null) {
      if (conflict) {
        showFormError(conflict);
        nameInput.focus();
      }
      return;
    }
    const field = r.status === 400 && r.error ? fieldOfMessage(r.error) : null;
    if (field === 'name') showFieldError('name', `Nom refusé par l’API : ${apiReason(r)}. Rien n’a été enregistré.`);
    else if (field === 'description') showFieldError('description', `Description refusée par l’API : ${apiReason(r)}. Rien n’a été enregistré.`);
    else showFormError(describeFailure(r, { write: true }));
    noteFailure(r);
  });
  // Puts another version of the item in the fields (after a 412).
  function setValues(item) {
    nameInput.value = item.name;
    descInput.value = item.description ?? '';
  }
  return { form, nameInput, setValues };
}

const notice = byId('edit-notice');
function announce(text) {
  setText(notice, text);
}

let createForm = null;
function mountCreateForm() {
  createForm = buildItemForm({
    prefix: 'create',
    title: 'Ajouter un élément',
    submitLabel: 'Ajouter',
    initial: { name: '', description: null },
    async submit(body) {
      const r = await api('POST', '/items', { body, auth: true });
      if (r.ok && r.data && Number.isInteger(r.data.id)) keepTag(r.data.id, r);
      return r;
    },
    onDone(item, { nameInput, descInput, clearErrors }) {
      clearErrors();
      nameInput.value = '';
      descInput.value = '';
      if (item && Number.isInteger(item.id)) {
        items.set(item.id, item);
        if (listState === 'ready') {
          // Ids ascend: a new item goes last, even before the pages still to load.
          if (more.next !== null) more.ahead.add(item.id);
          itemsUi.list.append(renderItem(item));
          updateCount();
        }
      }
      announce(`Élément « ${item ? item.name : ''} » ajouté.`);
      nameInput.focus();
    },
  });
  byId('create-form-slot').replaceChildren(createForm.form);
}

// "Modifier": reads the current version and its ETag, then opens the form on it.
async function startEdit(li, shown) {
  if (reading.has(shown.id)) return;
  reading.add(shown.id);
  const current = await readCurrent(shown.id, 'enregistré');
  reading.delete(shown.id);
  if (!li.isConnected) return; // the list was reloaded meanwhile
  if (current.gone) {
    forgetItem(li, shown.id, `L’élément « ${shown.name} » n’existe plus : il a été supprimé entre-temps.`);
    return;
  }
  if (current.failure) {
    fillItemView(li, shown, { alert: current.failure });
    focusItemButton(shown.id, 'edit');
    return;
  }
  openEditForm(li, current.item, { changed: !sameVersion(shown, current.item) });
}

// `changed`: the version read differs from the one the card showed.
function openEditForm(li, item, { changed = false } = {}) {
  const id = item.id;
  const formTitle = (it) => `Modifier l’élément « ${it.name} »`;
  const heading = el('h3', { class: 'item-name' }, `Modifier « ${item.name} »`);
  const cancel = () => {
    fillItemView(li, items.get(id) || item);
    focusItemButton(id, 'edit');
  };
  const ui = buildItemForm({
    prefix: `edit-${id}`,
    title: formTitle(item),
    submitLabel: 'Enregistrer',
    initial: item,
    submit: async (body) => {
      const r = await api('PUT', `/items/${id}`, { body, auth: true, ifMatch: etags.get(id) });
      if (r.ok) keepTag(id, r);
      return r;
    },
    onDone(updated) {
      const next = updated && Number.isInteger(updated.id) ? updated : item;
      items.set(next.id, next);
      fillItemView(li, next);
      announce(`Élément « ${next.name} » enregistré.`);
      focusItemButton(next.id, 'edit');
    },
    async onConflict() {
      const current = await readCurrent(id, 'enregistré');
      if (!li.isConnected) return '';
      if (current.gone) {
        forgetItem(li, id, `L’élément « ${item.name} » a été supprimé entre-temps par quelqu’un d’autre : rien n’a été enregistré.`);
        return '';
      }
      if (current.failure) return conflictMessage('enregistré', false);
      ui.setValues(current.item);
      setText(heading, `Modifier « ${current.item.name} »`);
      ui.form.setAttribute('aria-label', formTitle(current.item));
      return conflictMessage('enregistré', true);
    },
    onCancel: cancel,
  });
  li.replaceChildren(el('div', { class: 'item-card item-card-editing' },
    heading,
    changed ? el('p', { class: 'notice' }, 'Cet élément a été modifié entre-temps : le formulaire montre sa version actuelle.') : null,
    ui.form));
  ui.nameInput.focus();
}

// "Supprimer": reads the current version and its ETag, shows it on the card,
// then asks for a confirmation; the DELETE is conditional on that version.
async function openDeleteConfirm(li, shown) {
  if (reading.has(shown.id)) return;
  reading.add(shown.id);
  const current = await readCurrent(shown.id, 'supprimé');
  reading.delete(shown.id);
  if (!li.isConnected) return;
  if (current.gone) {
    forgetItem(li, shown.id, `L’élément « ${shown.name} » avait déjà été supprimé.`);
    return;
  }
  if (current.failure) {
    fillItemView(li, shown, { alert: current.failure });
    focusItemButton(shown.id, 'delete');
    return;
  }
  const item = current.item;
  fillItemView(li, item); // the card shows the version the person is asked to delete
  const actions = li.querySelector('.item-actions');
  const error = el('p', { class: 'form-error', role: 'alert', hidden: true });
  const confirm = el('button', { type: 'button', class: 'danger', 'data-action': 'confirm-delete' }, 'Oui, supprimer');
  const cancel = el('button', { type: 'button', class: 'secondary', 'data-action': 'cancel-delete' }, 'Annuler');
  const box = el('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirmer la suppression' },
    sameVersion(shown, item) ? null : el('p', { class: 'notice' }, 'Cet élément a été modifié entre-temps : la fiche montre sa version actuelle.'),
    el('p', {}, 'Supprimer définitivement cet élément ?'),
    el('div', { class: 'row' }, confirm, cancel),
    error);
  cancel.addEventListener('click', () => {
    box.replaceWith(actions);
    focusItemButton(item.id, 'delete');
  });
  box.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      cancel.click();
    }
  });
  confirm.addEventListener('click', async () => {
    confirm.disabled = true;
    error.hidden = true;
    const r = await api('DELETE', `/items/${item.id}`, { auth: true, ifMatch: etags.get(item.id) });
    if (r.ok || r.status === 404) {
      forgetItem(li, item.id, r.ok ? `Élément « ${item.name} » supprimé.` : `L’élément « ${item.name} » avait déjà été supprimé.`);
      return;
    }
    if (r.status === 412) {
      const now = await readCurrent(item.id, 'supprimé');
      confirm.disabled = false;
      if (!li.isConnected) return;
      if (now.gone) {
        forgetItem(li, item.id, `L’élément « ${item.name} » a été supprimé entre-temps par quelqu’un d’autre.`);
      } else if (now.item) {
        // The confirmation was about another version: show the current one and ask again.
        fillItemView(li, now.item, { alert: conflictMessage('supprimé', true) });
        focusItemButton(item.id, 'delete');
      } else {
        setText(error, conflictMessage('supprimé', false));
        error.hidden = false;
      }
      return;
    }
    confirm.disabled = false;
    setText(error, describeWriteFailure(r, 'supprimé'));
    error.hidden = false;
    noteFailure(r);
  });
  actions.replaceWith(box);
  cancel.focus();
}

/* -------------------------------------------------------- editing mode */

const tokenUi = {
  form: byId('token-form'),
  input: byId('token-input'),
  error: byId('token-error'),
  active: byId('token-active'),
  clear: byId('token-clear'),
  createSection: byId('create'),
};

function applyEditingMode() {
  const editing = isEditing();
  tokenUi.form.hidden = editing;
  tokenUi.active.hidden = !editing;
  tokenUi.createSection.hidden = !editing;
  if (editing && !createForm) mountCreateForm();
  if (!editing && createForm) {
    byId('create-form-slot').replaceChildren();
    createForm = null;
  }
  if (listState === 'ready') renderList();
}

function showTokenError(text) {
  setText(tokenUi.error, text);
  tokenUi.error.hidden = false;
  tokenUi.input.setAttribute('aria-invalid', 'true');
  tokenUi.input.focus();
}

tokenUi.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = tokenUi.input.value.trim();
  if (value === '') {
    showTokenError('Collez d’abord le jeton d’API dans ce champ.');
    return;
  }
  if (!/^[\x21-\x7e]+$/.test(value)) {
    showTokenError('Ce jeton contient des caractères non valides (espaces ou caractères non ASCII).');
    return;
  }
  tokenUi.error.hidden = true;
  tokenUi.input.removeAttribute('aria-invalid');
  tokenUi.input.value = '';
  token.set(value);
  applyEditingMode();
  announce('Mode édition activé. L’API vérifiera le jeton au premier enregistrement.');
  if (createForm) createForm.nameInput.focus();
});

tokenUi.clear.addEventListener('click', () => {
  token.clear();
  applyEditingMode();
  announce('Mode édition désactivé : le jeton a été oublié.');
  tokenUi.input.focus();
});

itemsUi.reload.addEventListener('click', () => loadItems());

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') checkStatus();
});

/* ---------------------------------------------------------------- start */

applyEditingMode();
checkStatus();
loadItems();
