// Front page of the items stack: live status of every tier, the list of items
// (every page of /items), and an editing mode driven by the API token.
//
// Safe by construction: every piece of data enters the page as text
// (textContent or text nodes), never as HTML; no eval, no inline script or
// style, so the strict Content-Security-Policy `default-src 'self'` holds.

const STATUS_INTERVAL_MS = 5000;
const STATUS_TIMEOUT_MS = 4000;
const REQUEST_TIMEOUT_MS = 15000;
const PAGE_LIMIT = 100;
const MAX_PAGES = 10000; // bounds the pagination walk whatever the server says
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
// { ok, status (0 when no HTTP answer), network, timeout, data, error, requestId, headers }.
async function api(method, path, { body, auth = false, timeout = REQUEST_TIMEOUT_MS } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json; charset=utf-8';
  if (auth) headers.Authorization = `Bearer ${token.get()}`;
  const result = { ok: false, status: 0, network: false, timeout: false, data: null, error: '', requestId: '', headers: null };
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
};
const items = new Map(); // id -> item, the list as last loaded and edited
let listState = 'loading'; // loading | ready | error
let loadGeneration = 0;

function sortedItems() {
  return [...items.values()].sort((a, b) => a.id - b.id);
}

// Heading count, and the state line when the list is or stops being empty
// (after a create or delete, only the edit notice speaks).
function updateCount({ loaded = false } = {}) {
  setText(itemsUi.count, listState === 'ready' || items.size > 0 ? `(${countLabel(items.size)})` : '');
  if (listState !== 'ready') return;
  const wasEmpty = itemsUi.state.dataset.state === 'empty';
  itemsUi.state.dataset.state = items.size === 0 ? 'empty' : 'ready';
  if (items.size === 0) setText(itemsUi.state, 'Aucun élément pour le moment.');
  else if (loaded) setText(itemsUi.state, items.size === 1 ? '1 élément chargé.' : `${countLabel(items.size)} chargés.`);
  else if (wasEmpty) setText(itemsUi.state, '');
}

async function loadItems() {
  const generation = ++loadGeneration;
  listState = 'loading';
  itemsUi.list.setAttribute('aria-busy', 'true');
  itemsUi.state.dataset.state = 'loading';
  setText(itemsUi.state, 'Chargement des éléments…');
  const loaded = [];
  const seen = new Set();
  let url = `/items?limit=${PAGE_LIMIT}`;
  for (let page = 0; url !== null && page < MAX_PAGES && !seen.has(url); page++) {
    seen.add(url);
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
    loaded.push(...r.data);
    url = nextLink(r.headers.get('Link'));
  }
  items.clear();
  for (const item of loaded) {
    if (item && Number.isInteger(item.id)) items.set(item.id, item);
  }
  listState = 'ready';
  renderList();
  updateCount({ loaded: true });
  itemsUi.list.setAttribute('aria-busy', 'false');
}

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

function fillItemView(li, item) {
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
  li.replaceChildren(article);
}

function itemActions(li, item) {
  const label = (verb) => [verb, el('span', { class: 'visually-hidden' }, ` « ${item.name} »`)];
  const edit = el('button', { type: 'button', class: 'secondary', 'data-action': 'edit' }, ...label('Modifier'));
  const remove = el('button', { type: 'button', class: 'danger', 'data-action': 'delete' }, ...label('Supprimer'));
  edit.addEventListener('click', () => openEditForm(li, item));
  remove.addEventListener('click', () => openDeleteConfirm(li, item, actions));
  const actions = el('div', { class: 'item-actions' }, edit, remove);
  return actions;
}

function focusItemButton(id, action) {
  const li = itemsUi.list.querySelector(`li[data-id="${Number(id)}"]`);
  const button = li && li.querySelector(`button[data-action="${action}"]`);
  if (button) button.focus();
}

/* ---------------------------------------------------------------- forms */

// A create/edit form. `submit(body)` performs the request and returns the API result.
function buildItemForm({ prefix, title, submitLabel, initial, submit, onDone, onCancel }) {
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
    busy = false;
    submitButton.disabled = false;
    form.setAttribute('aria-busy', 'false');
    if (r.ok) {
      onDone(r.data, { form, nameInput, descInput, clearErrors });
      return;
    }
    const field = r.status === 400 && r.error ? fieldOfMessage(r.error) : null;
    if (field === 'name') showFieldError('name', `Nom refusé par l’API : ${apiReason(r)}. Rien n’a été enregistré.`);
    else if (field === 'description') showFieldError('description', `Description refusée par l’API : ${apiReason(r)}. Rien n’a été enregistré.`);
    else showFormError(describeFailure(r, { write: true }));
    noteFailure(r);
  });
  return { form, nameInput };
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
    submit: (body) => api('POST', '/items', { body, auth: true }),
    onDone(item, { nameInput, descInput, clearErrors }) {
      clearErrors();
      nameInput.value = '';
      descInput.value = '';
      if (item && Number.isInteger(item.id)) {
        items.set(item.id, item);
        if (listState === 'ready') {
          itemsUi.list.append(renderItem(item)); // ids ascend: a new item goes last
          updateCount();
        }
      }
      announce(`Élément « ${item ? item.name : ''} » ajouté.`);
      nameInput.focus();
    },
  });
  byId('create-form-slot').replaceChildren(createForm.form);
}

function openEditForm(li, item) {
  const cancel = () => {
    fillItemView(li, items.get(item.id) || item);
    focusItemButton(item.id, 'edit');
  };
  const { form, nameInput } = buildItemForm({
    prefix: `edit-${item.id}`,
    title: `Modifier l’élément « ${item.name} »`,
    submitLabel: 'Enregistrer',
    initial: item,
    submit: (body) => api('PUT', `/items/${item.id}`, { body, auth: true }),
    onDone(updated) {
      const next = updated && Number.isInteger(updated.id) ? updated : item;
      items.set(next.id, next);
      fillItemView(li, next);
      announce(`Élément « ${next.name} » enregistré.`);
      focusItemButton(next.id, 'edit');
    },
    onCancel: cancel,
  });
  li.replaceChildren(el('div', { class: 'item-card item-card-editing' },
    el('h3', { class: 'item-name' }, `Modifier « ${item.name} »`), form));
  nameInput.focus();
}

function openDeleteConfirm(li, item, actions) {
  const error = el('p', { class: 'form-error', role: 'alert', hidden: true });
  const confirm = el('button', { type: 'button', class: 'danger', 'data-action': 'confirm-delete' }, 'Oui, supprimer');
  const cancel = el('button', { type: 'button', class: 'secondary', 'data-action': 'cancel-delete' }, 'Annuler');
  const box = el('div', { class: 'confirm', role: 'group', 'aria-label': 'Confirmer la suppression' },
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
    const r = await api('DELETE', `/items/${item.id}`, { auth: true });
    confirm.disabled = false;
    if (r.ok || r.status === 404) {
      items.delete(item.id);
      li.remove();
      updateCount();
      announce(r.ok ? `Élément « ${item.name} » supprimé.` : `L’élément « ${item.name} » avait déjà été supprimé.`);
      itemsUi.title.focus();
      return;
    }
    setText(error, describeFailure(r, { write: true }).replace('Rien n’a été enregistré.', 'Rien n’a été supprimé.'));
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
