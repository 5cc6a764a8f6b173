// The safeguarding desk tab. No framework and no CDN. Every piece of text from the server (much of it typed by
// people) goes into the page with textContent, never parsed as HTML, so it is shown and never interpreted.
'use strict';

(() => {
  const inTeams = window.parent !== window;
  const $ = (id) => document.getElementById(id);
  const when = new Intl.DateTimeFormat('en-GB', {
    day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', timeZone: 'Europe/London',
  });
  const day = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
  const state = { view: 'open', group: '', page: 1, pages: 1, current: null };

  // --- sign-in -----------------------------------------------------------------------------------------------------

  let initialised = null;
  let token = null;

  // Teams JS comes from this app's own origin, and only when the page is framed by Teams. Its attempt to fetch a
  // list of Teams' origins from a Microsoft CDN is stopped by the page's CSP; it then uses the list it ships with.
  function loadTeamsJs() {
    return new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = '/tab/static/teams.js';
      script.onload = () => (window.microsoftTeams ? resolve() : reject(new Error('teams-js')));
      script.onerror = () => reject(new Error('teams-js'));
      document.head.appendChild(script);
    });
  }

  async function teamsToken(fresh) {
    if (!inTeams) return null; // outside Teams the page asks as it is; the server answers 401 without a token
    if (!initialised) initialised = loadTeamsJs().then(() => window.microsoftTeams.app.initialize());
    await initialised;
    if (!token || fresh) token = await window.microsoftTeams.authentication.getAuthToken();
    return token;
  }

  async function api(path) {
    const ask = async (fresh) => {
      const headers = { Accept: 'application/json' };
      const bearer = await teamsToken(fresh);
      if (bearer) headers.Authorization = `Bearer ${bearer}`;
      return fetch(path, { headers, cache: 'no-store', credentials: 'same-origin' });
    };
    let response = await ask(false);
    if (response.status === 401 && inTeams) response = await ask(true); // the token may simply have expired
    return response;
  }

  // --- small DOM helpers ---------------------------------------------------------------------------------------------

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function time(iso) {
    const node = el('time', iso ? when.format(new Date(iso)) : 'Not given');
    if (iso) node.setAttribute('datetime', iso);
    return node;
  }

  function say(text) {
    $('status').textContent = text || '';
  }

  function problem(text) {
    $('problem').textContent = text || '';
  }

  function show(id, focusId) {
    for (const section of ['message', 'home', 'case', 'child']) $(section).hidden = section !== id;
    if (focusId) $(focusId).focus();
  }

  function message(title, text) {
    say('');
    document.querySelector('.banner nav').hidden = true; // nothing behind these links for this person now
    $('message-title').textContent = title;
    $('message-text').textContent = text;
    show('message', 'message-title');
  }

  // What the person sees when the server says no: never any case data, and a next step.
  async function failed(response) {
    say('');
    if (response.status === 401) {
      if (inTeams) {
        message('We could not sign you in', 'Close this tab and open it again. If it keeps happening, tell your '
          + 'IT team.');
      } else {
        message('Open this in Teams', 'The safeguarding desk opens inside Microsoft Teams. In Teams, open the '
          + 'eSafety app and choose Safeguarding desk.');
      }
      return;
    }
    if (response.status === 403) {
      message('This desk is for the safeguarding team', 'You do not have access to the safeguarding desk. If you '
        + 'think you should, ask your designated safeguarding lead.');
      return;
    }
    let text = 'Something went wrong on our side. Please try again in a minute.';
    if (response.status < 500) {
      try {
        const body = await response.json();
        if (body && typeof body.error === 'string') text = body.error;
      } catch (_ignored) { /* keep the general message */ }
    }
    problem(text);
  }

  async function load(path, busy) {
    problem('');
    say(busy);
    let response;
    try {
      response = await api(path);
    } catch (error) {
      say('');
      if (error && error.message === 'teams-js') {
        message('We could not sign you in', 'Part of this page did not load. Close this tab and open it again.');
      } else {
        problem('We could not reach the desk. Check your connection and try again.');
      }
      return null;
    }
    if (!response.ok) {
      await failed(response);
      return null;
    }
    return response;
  }

  // --- the caseload ------------------------------------------------------------------------------------------------

  function fillSelect(select, options, chosen) {
    const keep = select.id === 'group' ? [select.options[0]] : [];
    clear(select);
    for (const option of keep) select.appendChild(option);
    for (const { key, label } of options) {
      const option = el('option', label, { value: key });
      option.selected = key === chosen;
      select.appendChild(option);
    }
    if (!chosen && keep.length) keep[0].selected = true;
  }

  function flags(row) {
    const cell = el('td');
    const add = (text, kind) => cell.appendChild(el('span', text, { class: `badge ${kind}` }));
    if (row.undelivered) add(row.undelivered === 1 ? 'Alert not delivered' : `${row.undelivered} alerts not delivered`,
      'undelivered');
    if (row.urgent) add('Urgent', 'urgent');
    if (row.overdue) add('Overdue', 'overdue');
    return cell;
  }

  function caseRow(row) {
    const tr = el('tr');
    const first = el('th', null, { scope: 'row' });
    first.appendChild(el('a', row.reference, { href: `#case/${encodeURIComponent(row.token)}` }));
    tr.appendChild(first);
    const category = el('td');
    category.appendChild(el('span', row.category));
    category.appendChild(el('span', row.group, { class: 'muted block' }));
    tr.appendChild(category);
    tr.appendChild(el('td', row.severity));
    tr.appendChild(el('td', row.status));
    const reported = el('td');
    reported.appendChild(time(row.reported_at));
    tr.appendChild(reported);
    tr.appendChild(el('td', row.owner || 'Nobody yet'));
    tr.appendChild(flags(row));
    return tr;
  }

  async function showCases(focus) {
    const query = new URLSearchParams({ view: state.view, page: String(state.page) });
    if (state.group) query.set('group', state.group);
    const response = await load(`/tab/api/cases?${query}`, 'Loading cases…');
    if (!response) return;
    const page = await response.json();
    state.page = page.filter.page;
    state.pages = page.pages;
    fillSelect($('view'), page.views, page.filter.view);
    fillSelect($('group'), page.groups, page.filter.group || '');
    const body = $('cases').tBodies[0];
    clear(body);
    for (const row of page.rows) body.appendChild(caseRow(row));
    if (!page.rows.length) {
      const tr = el('tr');
      tr.appendChild(el('td', 'No open cases match these filters.', { colspan: '7' }));
      body.appendChild(tr);
    }
    const view = page.views.find((v) => v.key === page.filter.view);
    $('count').textContent = `${page.total} ${page.total === 1 ? 'case' : 'cases'}: ${view ? view.label : ''}`
      + (page.filter.group ? `, ${page.groups.find((g) => g.key === page.filter.group)?.label || ''}` : '');
    $('page-of').textContent = `Page ${page.filter.page} of ${Math.max(page.pages, 1)}`;
    $('previous').disabled = page.filter.page <= 1;
    $('next').disabled = page.filter.page >= page.pages;
    show('home', focus);
    say(`${page.total} ${page.total === 1 ? 'case' : 'cases'} shown.`);
  }

  function goToCases(changes) {
    Object.assign(state, changes);
    const query = new URLSearchParams({ view: state.view, page: String(state.page) });
    if (state.group) query.set('group', state.group);
    const target = `#cases?${query}`;
    if (location.hash === target) showCases('cases-title');
    else location.hash = target;
  }

  // --- search, a case, a child's file --------------------------------------------------------------------------------

  async function search(text) {
    const response = await load(`/tab/api/children?q=${encodeURIComponent(text)}`, 'Searching…');
    if (!response) return;
    const found = await response.json();
    const list = $('children');
    clear(list);
    for (const child of found.children) {
      const item = el('li');
      item.appendChild(el('a', child.name, { href: `#child/${encodeURIComponent(child.token)}` }));
      const extra = [child.year_group, child.date_of_birth && `born ${day.format(new Date(child.date_of_birth))}`]
        .filter(Boolean).join(', ');
      if (extra) item.appendChild(el('span', ` ${extra}`, { class: 'muted' }));
      list.appendChild(item);
    }
    say(found.children.length ? `${found.children.length} found.` : 'No child with a file matches that name.');
  }

  function details(list, pairs) {
    clear(list);
    for (const [label, value] of pairs) {
      if (value === null || value === undefined || value === '') continue;
      list.appendChild(el('dt', label));
      const dd = el('dd');
      if (value instanceof Node) dd.appendChild(value);
      else dd.textContent = String(value);
      list.appendChild(dd);
    }
  }

  function chronology(list, entries, withCase) {
    clear(list);
    for (const entry of entries) {
      const item = el('li');
      const head = el('p', null, { class: 'when' });
      head.appendChild(time(entry.happened_at));
      if (withCase) head.appendChild(el('span', ` ${entry.case}`, { class: 'muted' }));
      item.appendChild(head);
      item.appendChild(el('p', entry.text, { class: 'what' }));
      if (entry.recorded_at && entry.happened_at
          && Math.abs(new Date(entry.recorded_at) - new Date(entry.happened_at)) > 60000) {
        const note = el('p', 'Recorded ', { class: 'muted' });
        note.appendChild(time(entry.recorded_at));
        item.appendChild(note);
      }
      list.appendChild(item);
    }
    if (!entries.length) list.appendChild(el('li', 'Nothing recorded yet.'));
  }

  function childLinks(children) {
    if (!children.length) return null;
    const list = el('ul', null, { class: 'inline' });
    for (const child of children) {
      const item = el('li');
      item.appendChild(el('a', child.name, { href: `#child/${encodeURIComponent(child.token)}` }));
      if (child.year_group) item.appendChild(el('span', ` ${child.year_group}`, { class: 'muted' }));
      list.appendChild(item);
    }
    return list;
  }

  async function showCase(caseToken) {
    const response = await load(`/tab/api/cases/${encodeURIComponent(caseToken)}`, 'Opening the case…');
    if (!response) return;
    const record = await response.json();
    state.current = { kind: 'case', token: record.token, name: record.reference };
    $('case-title').textContent = `Case ${record.reference}`;
    const reported = el('span');
    reported.appendChild(time(record.reported_at));
    reported.appendChild(document.createTextNode(` by ${record.reported_by}`));
    details($('case-details'), [
      ['Status', record.status], ['Category', `${record.category} (${record.group})`], ['Severity', record.severity],
      ['About', record.about], ['Children', childLinks(record.children)], ['Member of staff', record.staff_member],
      ['Where', record.where], ['When it happened', record.when], ['Reported', reported],
      ['Owner', record.owner || 'Nobody yet'], ['Who is involved', record.who_is_involved],
      ['What happened', record.what_happened], ['Evidence', record.evidence],
      ['Already done', record.already_done], ['Actions recorded', record.actions.join(', ')],
      ['Outcome', record.outcome],
    ]);
    chronology($('case-chronology'), record.chronology, false);
    show('case', 'case-title');
    say(`Case ${record.reference} open.`);
  }

  async function showChild(childToken) {
    const response = await load(`/tab/api/children/${encodeURIComponent(childToken)}`, 'Opening the file…');
    if (!response) return;
    const file = await response.json();
    const child = file.child;
    state.current = { kind: 'child', token: child.token, name: child.name };
    $('child-title').textContent = child.name;
    details($('child-details'), [
      ['Year group', child.year_group],
      ['Date of birth', child.date_of_birth && day.format(new Date(child.date_of_birth))],
      ['UPN', child.upn], ['MIS id', child.mis_id],
    ]);
    const cases = $('child-cases');
    clear(cases);
    for (const record of file.cases) {
      const item = el('li');
      item.appendChild(el('a', record.reference, { href: `#case/${encodeURIComponent(record.token)}` }));
      item.appendChild(el('span', ` ${record.category}, ${record.status}`, { class: 'muted' }));
      cases.appendChild(item);
    }
    if (!file.cases.length) cases.appendChild(el('li', 'No cases you can see.'));
    $('child-hidden').textContent = file.cases_not_shown
      ? `${file.cases_not_shown} more linked ${file.cases_not_shown === 1 ? 'case is' : 'cases are'} not shown `
        + 'because you do not have access to them.'
      : '';
    chronology($('child-chronology'), file.chronology, true);
    show('child', 'child-title');
    say(`${child.name}'s file open.`);
  }

  function filename(disposition, fallback) {
    const match = /filename="([^"]+)"/.exec(disposition || '');
    return match ? match[1] : fallback;
  }

  async function exportCurrent(format) {
    const current = state.current;
    if (!current) return;
    const response = await load(`/tab/api/export/${current.kind}/${encodeURIComponent(current.token)}`
      + `?format=${format}`, `Preparing the ${format.toUpperCase()} export…`);
    if (!response) return;
    const blob = await response.blob();
    const name = filename(response.headers.get('Content-Disposition'), `export.${format}`);
    const url = URL.createObjectURL(blob);
    const link = el('a', null, { href: url, download: name, hidden: '' });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    say(`Export ready: ${name}. Look in your downloads.`);
  }

  // --- routing: the address's # part, so Back works and a case can be reopened ----------------------------------

  function route() {
    const hash = decodeURIComponent(location.hash.slice(1));
    const [place, rest] = hash.split('/', 2);
    if (place === 'case' && rest) return showCase(rest);
    if (place === 'child' && rest) return showChild(rest);
    const query = new URLSearchParams(hash.split('?')[1] || '');
    state.view = query.get('view') || state.view;
    state.group = query.has('group') ? query.get('group') : (hash.startsWith('cases?') ? '' : state.group);
    state.page = Number.parseInt(query.get('page') || String(state.page), 10) || 1;
    return showCases(place === 'find' ? null : (hash ? 'cases-title' : null)).then(() => {
      if (place === 'find' && !$('home').hidden) $('q').focus();
    });
  }

  function start() {
    $('filters').addEventListener('submit', (event) => {
      event.preventDefault();
      goToCases({ view: $('view').value, group: $('group').value, page: 1 });
    });
    $('previous').addEventListener('click', () => goToCases({ page: Math.max(1, state.page - 1) }));
    $('next').addEventListener('click', () => goToCases({ page: Math.min(state.pages, state.page + 1) }));
    $('find').addEventListener('submit', (event) => {
      event.preventDefault();
      const text = $('q').value.trim();
      if (text.length < 2) {
        problem("Type at least 2 letters of the child's name.");
        $('q').focus();
        return;
      }
      search(text);
    });
    for (const button of document.querySelectorAll('[data-export]')) {
      button.addEventListener('click', () => exportCurrent(button.dataset.export));
    }
    window.addEventListener('hashchange', route);
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
