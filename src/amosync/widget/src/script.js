/*
 * amosync widget for amoCRM: connects the account to Unisender and shows the sync.
 *
 * - Settings modal (location "settings"): amoCRM renders the manifest's fields (Unisender API
 *   key, optional list ID); below them this script shows whether Unisender is connected, what
 *   the account needs (its `problems`), a "sync now" button and the progress of the running
 *   sync. Saving the settings sends the key to the amosync service, which checks it with
 *   Unisender; amoCRM saves it only once the service has accepted it (see onSave).
 * - Advanced settings page (location "advanced_settings"; amoCRM calls advancedSettings and
 *   gives the page's #work-area-<widget code>): the same panel, and under it the settings
 *   form — segment lists by tags and deal stages, the fields sent with the address, and
 *   unsubscribes written back to amoCRM (SPEC §8, §9) — picked by name; Save sends it
 *   (PUT /accounts/{id}/settings) and the panel follows the sync it started.
 *
 * Every message is the user's language (i18n/ru.json, i18n/en.json): the service's errors are
 * shown by their `error` code (errors.<code>), never by the service's English `detail`.
 * Right after the install the account does not exist on the service yet (its code exchange
 * runs as a job): the panel says it is being connected and asks again until it does.
 *
 * Every call goes through self.$authorizedAjax, which adds amoCRM's disposable token in the
 * X-Auth-Token header; the service trusts the account id in that token, not the one sent.
 * Only DOM APIs are used (no jQuery plugins, no CDN), and all text comes from i18n/.
 * BACKEND_URL and SUPPORT below are filled in by the builder (amosync widget build
 * --backend-url --support-email --support-url).
 */
define([], function () {
  'use strict';

  var BACKEND_URL = '__AMOSYNC_BACKEND_URL__';
  var SUPPORT = { email: '__AMOSYNC_SUPPORT_EMAIL__', link: '__AMOSYNC_SUPPORT_URL__' };
  var POLL_MS = 1000;
  // While the install's code exchange runs: ask this often, and after this long say so.
  var CONNECTING_POLL_MS = 2000;
  var CONNECTING_SLOW_MS = 60000;
  var MAX_POLL_ERRORS = 3;
  var STYLE_ID = 'amosync-widget-style';
  var FINAL = { done: true, failed: true };
  var COUNTS = ['fetched', 'synced', 'unsynced', 'failed'];
  // Where phone numbers written without a country code are read (ISO 3166, phonenumbers):
  // amoCRM's own markets first.
  var REGIONS = ['RU', 'KZ', 'BY', 'UZ', 'KG', 'AM', 'AZ', 'GE', 'MD', 'TJ', 'UA', 'US', 'GB', 'DE'];

  var CSS = [
    '.amosync{margin:16px 0;padding:16px;border:1px solid #dfe4ea;border-radius:6px;',
    'background:#fafbfc;color:#2e3640;font-size:14px;line-height:1.45}',
    '.amosync__title{font-weight:600;font-size:15px;margin-bottom:8px}',
    '.amosync__connection{display:flex;align-items:center;gap:8px;margin-bottom:4px}',
    '.amosync__connection::before{content:"";width:10px;height:10px;border-radius:50%;background:#b3bcc6}',
    '.amosync__connection[data-state=connected]::before{background:#27ae60}',
    '.amosync__connection[data-state=not_connected]::before{background:#e67e22}',
    '.amosync__connection[data-state=error]::before{background:#c0392b}',
    '.amosync__connection[data-state=connecting]::before{background:#1e6fd9;',
    'animation:amosync-pulse 1.2s ease-in-out infinite}',
    '@keyframes amosync-pulse{50%{opacity:.25}}',
    '.amosync__hint{color:#6b7785;font-size:13px;margin-bottom:8px}',
    '.amosync__message{margin:8px 0;padding:8px 10px;border-radius:4px;font-size:13px;',
    'overflow-wrap:anywhere}',
    '.amosync__message:empty{display:none}',
    '.amosync__message[data-kind=info]{background:#eef4fc;color:#1d4f91}',
    '.amosync__message[data-kind=success]{background:#e7f6ec;color:#1e7a43}',
    '.amosync__message[data-kind=error]{background:#fbeaea;color:#a12a1f}',
    '.amosync__button{margin-top:8px;padding:8px 16px;border:0;border-radius:4px;cursor:pointer;',
    'background:#1e6fd9;color:#fff;font-size:14px}',
    '.amosync__button:disabled{background:#b3bcc6;cursor:default}',
    '.amosync__progress{margin-top:12px}',
    '.amosync__progress[hidden]{display:none}',
    '.amosync__bar{height:10px;border-radius:5px;background:#e3e8ee;overflow:hidden}',
    '.amosync__bar-fill{height:100%;width:0;background:linear-gradient(90deg,#1e6fd9,#12a4b4);',
    'transition:width .3s}',
    '.amosync__progress[data-status=failed] .amosync__bar-fill{background:#c0392b}',
    '.amosync__run-status{margin-top:6px;font-weight:600}',
    '.amosync__counts{display:grid;grid-template-columns:auto auto;gap:2px 16px;margin:8px 0 0;',
    'justify-content:start;font-size:13px}',
    '.amosync__counts dt{color:#6b7785}.amosync__counts dd{margin:0;font-weight:600}',
    '.amosync__problems{margin:8px 0;padding:0;list-style:none}',
    '.amosync__problems:empty{display:none}',
    '.amosync__problems li{margin:4px 0;padding:8px 10px;border-radius:4px;background:#fff4e5;',
    'color:#8a4b00;font-size:13px;overflow-wrap:anywhere}',
    '.amosync__support{margin-top:14px;padding-top:10px;border-top:1px solid #dfe4ea;',
    'font-size:13px;color:#6b7785;overflow-wrap:anywhere}',
    '.amosync__support[hidden]{display:none}',
    '.amosync__support a{color:#1e6fd9;margin-right:12px;display:inline-block}',
    '@media (max-width:480px){.amosync{padding:12px;margin:12px 0}',
    '.amosync__button{width:100%}.amosync__counts{grid-template-columns:1fr auto}}',
    '.amosync-form{margin:16px 0;padding:16px;border:1px solid #dfe4ea;border-radius:6px;',
    'background:#fff;color:#2e3640;font-size:14px;line-height:1.45}',
    '.amosync-form[hidden]{display:none}',
    '.amosync-form fieldset{margin:0 0 16px;padding:0;border:0;min-width:0}',
    '.amosync-form legend{font-weight:600;font-size:15px;margin-bottom:4px;padding:0}',
    '.amosync-form label{display:block;font-size:13px;color:#6b7785;margin:8px 0 2px}',
    '.amosync-form label.amosync-form__check{display:flex;align-items:center;gap:8px;color:#2e3640;',
    'font-size:14px;margin:8px 0}',
    '.amosync-form input[type=text],.amosync-form input[type=number],.amosync-form select{',
    'width:100%;box-sizing:border-box;padding:6px 8px;border:1px solid #d4d9df;border-radius:4px;',
    'font-size:14px;background:#fff;color:#2e3640;max-width:100%}',
    '.amosync-form select[multiple]{padding:4px}',
    '.amosync-form__narrow{max-width:320px}',
    '.amosync-form__rule,.amosync-form__pair{position:relative;margin:8px 0;padding:12px;',
    'border:1px solid #e3e8ee;border-radius:6px;background:#fafbfc}',
    '.amosync-form__grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));',
    'gap:0 12px}',
    '.amosync-form__pair{display:grid;grid-template-columns:1fr 1fr auto;gap:8px;align-items:end}',
    '.amosync-form__pair label{margin-top:0}',
    '.amosync-form__add,.amosync-form__remove{padding:6px 12px;border:1px solid #1e6fd9;',
    'border-radius:4px;background:#fff;color:#1e6fd9;font-size:13px;cursor:pointer}',
    '.amosync-form__remove{border-color:#c8ced6;color:#6b7785;margin-top:8px}',
    '.amosync-form__pair .amosync-form__remove{margin-top:0}',
    '.amosync-form__note{color:#6b7785;font-size:13px;margin:4px 0;overflow-wrap:anywhere}',
    '.amosync-form__note[data-kind=error]{color:#a12a1f}',
    '.amosync-form__note:empty{display:none}',
    '.amosync-form__empty{color:#6b7785;font-size:13px;margin:4px 0}',
    '.amosync-form__empty[hidden]{display:none}',
    '@media (max-width:480px){.amosync-form{padding:12px}',
    '.amosync-form__pair{grid-template-columns:1fr}.amosync-form__add,.amosync-form__remove{width:100%}}'
  ].join('');

  function amocrm() {
    return window.AMOCRM || window.APP || null;
  }

  // The account id lives in AMOCRM.constant('account'), not in self.system().
  function currentAccountId() {
    try {
      var account = amocrm() && amocrm().constant('account');
      var id = account && Number(account.id);
      return id > 0 ? id : null;
    } catch (e) {
      return null;
    }
  }

  function injectStyle() {
    if (document.getElementById(STYLE_ID)) {
      return;
    }
    var style = document.createElement('style');
    style.id = STYLE_ID;
    style.textContent = CSS;
    document.head.appendChild(style);
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  // jQuery objects (what amoCRM passes) are array-like; accept a bare element too.
  function toElement(target) {
    if (!target) {
      return null;
    }
    return target.nodeType === 1 ? target : target[0] || null;
  }

  function parseJson(text) {
    try {
      return text ? JSON.parse(text) : null;
    } catch (e) {
      return null;
    }
  }

  // The list ID field as the service takes it: '' (none) or the text the user typed.
  function listField(value) {
    return String(value === undefined || value === null ? '' : value).trim();
  }

  return function () {
    var self = this;
    var view = null;
    var pollTimer = null;
    var watchedRun = null;
    var accountTimer = null;
    var connectingSince = null;
    var checking = false; // a key check started by onSave is under way
    var approved = null; // {key, list} the service has just accepted: amoCRM may save them
    var form = null; // the settings form (advanced settings page only)
    var formArea = null;
    var formTimer = null;
    var mainList = null; // the account's main list: it holds every contact, so no rule uses it

    // 'panel.connected' → the string at langs.panel.connected, or null when there is none.
    function lookup(path) {
      var parts = path.split('.');
      var value = typeof self.i18n === 'function' ? self.i18n(parts[0]) : (self.langs || {})[parts[0]];
      for (var i = 1; i < parts.length && value; i++) {
        value = value[parts[i]];
      }
      return typeof value === 'string' ? value : null;
    }

    function t(path) {
      return lookup(path) || path;
    }

    function widgetCode() {
      var settings = (self.get_settings && self.get_settings()) || {};
      return settings.widget_code || (self.params && self.params.widget_code) || '';
    }

    // One call to the service; resolves with the JSON body, rejects with
    // {status, code, detail} (status 0 when the service could not be reached).
    function request(method, path, body) {
      return new Promise(function (resolve, reject) {
        var options = { url: BACKEND_URL + path, method: method, type: method, dataType: 'json' };
        if (body !== undefined) {
          options.data = JSON.stringify(body);
          options.contentType = 'application/json';
        }
        self
          .$authorizedAjax(options)
          .done(function (data) {
            resolve(data);
          })
          .fail(function (xhr) {
            var status = (xhr && xhr.status) || 0;
            var payload = (xhr && xhr.responseJSON) || parseJson(xhr && xhr.responseText);
            // jQuery fails a 2xx whose body is empty or not JSON; the call itself worked.
            if (status >= 200 && status < 300) {
              resolve(payload);
              return;
            }
            reject({
              status: status,
              code: payload && typeof payload.error === 'string' ? payload.error : null,
              detail: payload && payload.detail
            });
          });
      });
    }

    // A code this widget has no text for (a newer service) gets the general text, with the
    // code for support; the service's English detail is never shown.
    function byCode(group, code) {
      var known = code && lookup(group + '.' + code);
      if (known) {
        return known;
      }
      return t('errors.unknown') + (code ? ' (' + code + ')' : '');
    }

    function errorMessage(error) {
      if (!error || !error.status) {
        return t('errors.network');
      }
      return byCode('errors', error.code);
    }

    function notify(text) {
      var crm = amocrm();
      if (crm && crm.notifications && typeof crm.notifications.show_message === 'function') {
        crm.notifications.show_message({ header: t('panel.title'), text: text });
      }
    }

    function setMessage(text, kind) {
      if (!view) {
        if (kind === 'error') {
          notify(text);
        }
        return;
      }
      view.message.textContent = text || '';
      view.message.setAttribute('data-kind', kind || 'info');
      view.message.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    }

    function setConnection(state) {
      if (!view) {
        return;
      }
      var text = {
        checking: t('panel.checking'),
        connecting: t('panel.connecting'),
        connected: t('panel.connected'),
        not_connected: t('panel.not_connected'),
        error: t('panel.not_connected')
      }[state];
      // The key field is "above" only in the settings modal, not on the advanced page.
      var hint = {
        not_connected: view.hasFields ? t('panel.connect_hint') : t('panel.connect_hint_settings'),
        connecting: t('panel.connecting_hint')
      };
      view.state = state;
      view.connection.textContent = text;
      view.connection.setAttribute('data-state', state);
      view.hint.textContent = hint[state] || '';
      view.connected = state === 'connected';
      updateButton();
    }

    function showProblems(problems) {
      if (!view) {
        return;
      }
      view.problems.textContent = '';
      problems.forEach(function (problem) {
        var item = element('li', null, byCode('problems', problem && problem.code));
        item.setAttribute('data-problem', (problem && problem.code) || '');
        view.problems.appendChild(item);
      });
    }

    function updateButton() {
      if (view) {
        view.button.disabled = !view.connected || watchedRun !== null;
      }
    }

    function percent(progress) {
      if (progress.status === 'done') {
        return 100;
      }
      var fetched = Number(progress.fetched) || 0;
      var processed =
        (Number(progress.synced) || 0) + (Number(progress.unsynced) || 0) + (Number(progress.failed) || 0);
      // Fetching and importing overlap, so `fetched` is a running total: stay below 100
      // until the service says the run is done.
      return fetched > 0 ? Math.min(99, Math.floor((processed * 100) / fetched)) : 0;
    }

    function showProgress(progress) {
      if (!view) {
        return;
      }
      var value = percent(progress);
      var status = progress.status || 'queued';
      view.progress.hidden = false;
      view.progress.setAttribute('data-status', status);
      view.bar.setAttribute('aria-valuenow', String(value));
      view.fill.style.width = value + '%';
      // Why a run failed is said by the account's problems, in the user's language; the
      // service's own words stay in a tooltip for support.
      view.runStatus.textContent = lookup('panel.sync_' + status) || status;
      view.runStatus.title = status === 'failed' && progress.error ? String(progress.error) : '';
      view.runHint.textContent = status === 'failed' ? t('panel.sync_failed_hint') : '';
      COUNTS.forEach(function (name) {
        view.counts[name].textContent = String(Number(progress[name]) || 0);
      });
    }

    function stopWatching() {
      if (pollTimer !== null) {
        clearTimeout(pollTimer);
        pollTimer = null;
      }
      watchedRun = null;
      updateButton();
    }

    function watchRun(runId, initial) {
      var errors = 0;
      stopWatching();
      watchedRun = String(runId);
      updateButton();
      showProgress(initial || { status: 'queued' });

      function poll() {
        pollTimer = null;
        request('GET', '/sync/' + encodeURIComponent(runId)).then(
          function (progress) {
            if (watchedRun !== String(runId)) {
              return; // a newer run replaced this one, or the widget was destroyed
            }
            errors = 0;
            progress = progress || {};
            showProgress(progress);
            if (FINAL[progress.status]) {
              stopWatching();
              refreshAccount(); // connection and problems after the run
              return;
            }
            pollTimer = setTimeout(poll, POLL_MS);
          },
          function (error) {
            if (watchedRun !== String(runId)) {
              return;
            }
            errors += 1;
            // A run the service no longer knows will never finish: stop asking.
            if (error.status === 404 || errors >= MAX_POLL_ERRORS) {
              setMessage(errorMessage(error), 'error');
              stopWatching();
              return;
            }
            pollTimer = setTimeout(poll, POLL_MS);
          }
        );
      }

      poll();
    }

    function clearAccountTimer() {
      if (accountTimer !== null) {
        clearTimeout(accountTimer);
        accountTimer = null;
      }
    }

    // The account as the service sees it: connection, problems, the last or running sync.
    function showAccount(account) {
      var wasConnecting = view && view.state === 'connecting';
      connectingSince = null;
      if (wasConnecting) {
        setMessage('', 'info');
      }
      if (account.status === 'disconnected') {
        setConnection('error');
        setMessage(t('errors.account_disconnected'), 'error');
        showProblems([]);
        return;
      }
      mainList = account.list_id ? Number(account.list_id) : null;
      setConnection(account.unisender_connected ? 'connected' : 'not_connected');
      // A missing key is what the hint under the connection already asks for.
      showProblems(
        (account.problems || []).filter(function (problem) {
          return problem && problem.code !== 'unisender_key_missing';
        })
      );
      var run = account.last_sync;
      if (run && run.run_id !== undefined && watchedRun === null) {
        if (FINAL[run.status]) {
          showProgress(run);
        } else {
          watchRun(run.run_id, run);
        }
      }
    }

    function refreshAccount() {
      clearAccountTimer();
      var accountId = currentAccountId();
      if (!accountId) {
        setConnection('error');
        setMessage(t('errors.no_account'), 'error');
        return Promise.resolve(null);
      }
      if (!view || view.state !== 'connecting') {
        setConnection('checking');
      }
      return request('GET', '/accounts/' + accountId).then(
        function (account) {
          showAccount(account || {});
          return account;
        },
        function (error) {
          if (error.status === 404 && error.code === 'account_not_found') {
            // Right after the install the service is still exchanging amoCRM's code for
            // tokens (a job): not an error yet. Say so, and ask again.
            if (connectingSince === null) {
              connectingSince = Date.now();
            }
            setConnection('connecting');
            if (Date.now() - connectingSince >= CONNECTING_SLOW_MS) {
              setMessage(t('panel.connecting_slow'), 'info');
            }
            if (view) {
              accountTimer = setTimeout(refreshAccount, CONNECTING_POLL_MS);
            }
            return null;
          }
          setConnection('error');
          setMessage(errorMessage(error), 'error');
          return null;
        }
      );
    }

    function startSync() {
      var accountId = currentAccountId();
      if (!accountId) {
        setMessage(t('errors.no_account'), 'error');
        return;
      }
      setMessage('', 'info');
      view.button.disabled = true;
      request('POST', '/sync', { account_id: accountId }).then(
        function (run) {
          watchRun(run.run_id, { status: run.status || 'queued' });
        },
        function (error) {
          setMessage(errorMessage(error), 'error');
          updateButton();
        }
      );
    }

    // Sends the key to the service, which checks it with Unisender before storing it;
    // resolves true when it was accepted.
    function connect(key, list) {
      var accountId = currentAccountId();
      if (!accountId) {
        setMessage(t('errors.no_account'), 'error');
        return Promise.resolve(false);
      }
      var body = { account_id: accountId, unisender_key: key };
      if (list) {
        body.list_id = /^\d+$/.test(list) ? Number(list) : list;
      }
      setMessage(t('panel.saving_key'), 'info');
      return request('POST', '/vidget/unisender', body).then(
        function (answer) {
          setMessage(t('panel.key_saved'), 'success');
          clearAccountTimer();
          setConnection('connected');
          if (answer && answer.run_id !== undefined && answer.run_id !== null) {
            watchRun(answer.run_id, { status: 'queued' });
          }
          return true;
        },
        function (error) {
          setMessage(errorMessage(error), 'error');
          if (error.code === 'invalid_unisender_key') {
            setConnection('not_connected');
          }
          if (typeof self.set_status === 'function') {
            self.set_status('error');
          }
          return false;
        }
      );
    }

    // amoCRM's own save button, pressed again once the service accepted the key (the
    // pattern of amoCRM's documentation for settings checked asynchronously).
    function saveAgain() {
      var button = document.querySelector('.js-widget-save');
      if (button) {
        button.click();
      }
    }

    function buildSupport() {
      var box = element('div', 'amosync__support');
      box.setAttribute('data-amosync', 'support');
      if (!SUPPORT.email && !SUPPORT.link) {
        box.hidden = true;
        return box;
      }
      box.appendChild(element('span', null, t('panel.support') + ' '));
      if (SUPPORT.link) {
        var link = element('a', null, t('panel.support_link'));
        link.href = SUPPORT.link;
        link.target = '_blank';
        link.rel = 'noopener noreferrer';
        box.appendChild(link);
      }
      if (SUPPORT.email) {
        var mail = element('a', null, SUPPORT.email);
        mail.href = 'mailto:' + SUPPORT.email;
        box.appendChild(mail);
      }
      return box;
    }

    function buildPanel() {
      var root = element('div', 'amosync');
      root.setAttribute('data-amosync', 'panel');
      var panel = {
        root: root,
        state: null,
        connected: false,
        connection: element('div', 'amosync__connection'),
        hint: element('div', 'amosync__hint'),
        message: element('div', 'amosync__message'),
        problems: element('ul', 'amosync__problems'),
        button: element('button', 'amosync__button', t('panel.sync_now')),
        progress: element('div', 'amosync__progress'),
        bar: element('div', 'amosync__bar'),
        fill: element('div', 'amosync__bar-fill'),
        runStatus: element('div', 'amosync__run-status'),
        runHint: element('div', 'amosync__hint'),
        hasFields: false,
        counts: {}
      };
      panel.button.type = 'button';
      panel.button.disabled = true;
      panel.button.addEventListener('click', startSync);
      panel.progress.hidden = true;
      panel.bar.setAttribute('role', 'progressbar');
      panel.bar.setAttribute('aria-valuemin', '0');
      panel.bar.setAttribute('aria-valuemax', '100');
      panel.bar.setAttribute('aria-valuenow', '0');
      panel.bar.appendChild(panel.fill);
      var list = element('dl', 'amosync__counts');
      COUNTS.forEach(function (name) {
        var value = element('dd', null, '0');
        value.setAttribute('data-count', name);
        list.appendChild(element('dt', null, t('panel.' + name)));
        list.appendChild(value);
        panel.counts[name] = value;
      });
      panel.progress.appendChild(panel.bar);
      panel.progress.appendChild(panel.runStatus);
      panel.progress.appendChild(panel.runHint);
      panel.progress.appendChild(list);
      root.appendChild(element('div', 'amosync__title', t('panel.title')));
      root.appendChild(panel.connection);
      root.appendChild(panel.hint);
      root.appendChild(panel.message);
      root.appendChild(panel.problems);
      root.appendChild(panel.button);
      root.appendChild(panel.progress);
      root.appendChild(buildSupport());
      return panel;
    }

    // -- the settings form (advanced settings page): SPEC §8 and §9 ------------------------
    //
    // What goes to Unisender and where: segment lists chosen by tags and deal stages, the
    // phone, tags and custom fields sent with the address, and the unsubscribe written back
    // to amoCRM. Lists, tags, fields and stages are picked by name from
    // GET /accounts/{id}/settings/choices; a part the service could not read from its vendor
    // comes as null (with its error code), and its values are then typed as ids, so the
    // rest of the form still works. Saving sends the whole §8 object (PUT); a sync the
    // service started for it is followed in the panel above.

    function option(value, label, selected) {
      var node = element('option', null, label);
      node.value = String(value);
      node.selected = Boolean(selected);
      return node;
    }

    function labelled(text, control) {
      var label = element('label', null, text);
      label.appendChild(control);
      return label;
    }

    function checkbox(name, checked, text) {
      var label = element('label', 'amosync-form__check');
      var input = element('input');
      input.type = 'checkbox';
      input.name = name;
      input.checked = Boolean(checked);
      label.appendChild(input);
      label.appendChild(document.createTextNode(text));
      return label;
    }

    function textInput(name, value, max) {
      var input = element('input');
      input.type = 'text';
      input.name = name;
      input.value = value === undefined || value === null ? '' : String(value);
      input.maxLength = max || 255;
      input.spellcheck = false;
      return input;
    }

    function idInput(name, value) {
      var input = element('input');
      input.type = 'number';
      input.name = name;
      input.min = '1';
      input.step = '1';
      input.value = value ? String(value) : '';
      return input;
    }

    function selectedValues(select) {
      return Array.prototype.filter
        .call(select.options, function (item) {
          return item.selected && item.value !== '';
        })
        .map(function (item) {
          return item.value;
        });
    }

    function commaList(text) {
      return String(text || '')
        .split(',')
        .map(function (part) {
          return part.trim();
        })
        .filter(Boolean);
    }

    function positive(value) {
      var number = Number(String(value || '').trim());
      return number > 0 && Math.floor(number) === number ? number : null;
    }

    // Why a part of the choices is missing, in the user's words.
    function choiceNote(part) {
      var code = form && form.choices.errors && form.choices.errors[part];
      return code ? t('form.choices_failed') + ' ' + byCode('errors', code) : '';
    }

    // A choice among `items` (each with an id; `text` gives what it shows) after the blank
    // `blank`, or, without choices, the id typed in. A current id the vendor no longer lists
    // is kept visible as "#id", so saving says what is wrong; `skip` leaves items out.
    function idSelect(name, current, items, blank, text, skip) {
      if (!items) {
        return idInput(name, current);
      }
      var select = element('select');
      select.name = name;
      select.appendChild(option('', blank, !current));
      var known = false;
      items.forEach(function (item) {
        var chosen = Number(item.id) === Number(current);
        if (skip && skip(item, chosen)) {
          return;
        }
        known = known || chosen;
        select.appendChild(option(item.id, String(text(item)), chosen));
      });
      if (current && !known) {
        select.appendChild(option(current, '#' + current, true));
      }
      return select;
    }

    function listControl(name, current) {
      return idSelect(
        name,
        current,
        form.choices.lists,
        t('form.choose_list'),
        function (list) {
          return list.title;
        },
        function (list, chosen) {
          return Number(list.id) === mainList && !chosen; // the service refuses a rule on it (main_list_rule)
        }
      );
    }

    function tagsControl(name, chosen) {
      var tags = form.choices.tags;
      // No list to pick from (amoCRM did not answer, or the account has no tags yet): the
      // names are typed, so a rule can wait for a tag that is not in use yet.
      if (!tags || (!tags.length && !chosen.length)) {
        var input = textInput(name, chosen.join(', '), 2000);
        input.placeholder = t('form.tags_placeholder');
        return input;
      }
      var select = element('select');
      select.name = name;
      select.multiple = true;
      var wanted = {};
      chosen.forEach(function (tag) {
        wanted[String(tag).toLowerCase()] = true;
      });
      var seen = {};
      tags.forEach(function (tag) {
        var key = String(tag.name).toLowerCase();
        seen[key] = true;
        select.appendChild(option(tag.name, String(tag.name), wanted[key]));
      });
      chosen.forEach(function (tag) {
        if (!seen[String(tag).toLowerCase()]) {
          select.appendChild(option(tag, String(tag), true));
        }
      });
      select.size = Math.max(3, Math.min(6, select.options.length));
      return select;
    }

    function statusKey(pipelineId, statusId) {
      return pipelineId + ':' + statusId;
    }

    function statusesControl(name, chosen) {
      var select = element('select');
      select.name = name;
      select.multiple = true;
      var wanted = {};
      chosen.forEach(function (pair) {
        wanted[statusKey(pair.pipeline_id, pair.status_id)] = true;
      });
      var seen = {};
      (form.choices.pipelines || []).forEach(function (pipeline) {
        var group = element('optgroup');
        group.label = String(pipeline.name);
        (pipeline.statuses || []).forEach(function (status) {
          var key = statusKey(pipeline.id, status.id);
          seen[key] = true;
          group.appendChild(option(key, String(status.name), wanted[key]));
        });
        select.appendChild(group);
      });
      // Stages the account's pipelines no longer list (or could not be read): kept, by id.
      chosen.forEach(function (pair) {
        var key = statusKey(pair.pipeline_id, pair.status_id);
        if (!seen[key]) {
          seen[key] = true;
          select.appendChild(option(key, '#' + pair.pipeline_id + ' / #' + pair.status_id, true));
        }
      });
      select.size = Math.max(3, Math.min(8, select.options.length + (form.choices.pipelines || []).length));
      return select;
    }

    function fieldControl(name, current) {
      return idSelect(name, current, form.choices.fields, t('form.choose_field'), function (field) {
        return field.name;
      });
    }

    function removeButton(row, box) {
      var button = element('button', 'amosync-form__remove', t('form.remove'));
      button.type = 'button';
      button.addEventListener('click', function () {
        box.removeChild(row);
        updateEmpty();
      });
      return button;
    }

    // A removable row of `box`, a rule or a pair (its class and data-<kind>), holding `parts`.
    function addRow(kind, box, parts) {
      var row = element('div', 'amosync-form__' + kind);
      row.setAttribute('data-' + kind, '');
      parts.forEach(function (part) {
        row.appendChild(part);
      });
      row.appendChild(removeButton(row, box));
      box.appendChild(row);
      updateEmpty();
      return row;
    }

    function addRule(rule) {
      rule = rule || {};
      var grid = element('div', 'amosync-form__grid');
      grid.appendChild(labelled(t('form.rule_list'), listControl('list_id', rule.list_id)));
      grid.appendChild(labelled(t('form.rule_tags'), tagsControl('tags_any', rule.tags_any || [])));
      grid.appendChild(
        labelled(t('form.rule_statuses'), statusesControl('lead_statuses', rule.lead_statuses || []))
      );
      return addRow('rule', form.rules, [grid, element('div', 'amosync-form__note', t('form.rule_hint'))]);
    }

    function addPair(pair) {
      pair = pair || {};
      return addRow('pair', form.pairs, [
        labelled(t('form.amocrm_field'), fieldControl('amocrm_field_id', pair.amocrm_field_id)),
        labelled(t('form.unisender_field'), textInput('unisender_field', pair.unisender_field, 64))
      ]);
    }

    function updateEmpty() {
      if (form) {
        form.noRules.hidden = form.rules.children.length > 0;
      }
    }

    function setFormMessage(text, kind) {
      if (!form) {
        return;
      }
      form.message.textContent = text || '';
      form.message.setAttribute('data-kind', kind || 'info');
      form.message.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    }

    // A code has a text of its own in the form where the key modal's would mislead (there,
    // unknown_list is about the list ID typed beside the key).
    function formError(error) {
      if (error && error.status && error.code) {
        var own = lookup('form.errors.' + error.code);
        if (own) {
          return own;
        }
      }
      return errorMessage(error);
    }

    function regionControl(current) {
      var select = element('select');
      select.name = 'phone_region';
      var regions = REGIONS.slice();
      if (current && regions.indexOf(current) < 0) {
        regions.push(current);
      }
      regions.forEach(function (code) {
        select.appendChild(option(code, lookup('form.regions.' + code) || code, code === current));
      });
      return select;
    }

    // A part of the form: a fieldset named for what it sets (data-part), with its legend.
    function formPart(name, legend) {
      var part = element('fieldset');
      part.setAttribute('data-part', name);
      part.appendChild(element('legend', null, legend));
      return part;
    }

    // Shown when a vendor could not give the choices of `part` (its values are typed then).
    function choicesError(part) {
      var note = element('div', 'amosync-form__note', choiceNote(part));
      note.setAttribute('data-kind', 'error');
      note.setAttribute('data-choices-error', part);
      return note;
    }

    // A button that adds an empty row (a rule, a pair): `add` is called with no row.
    function addButton(text, action, add) {
      var button = element('button', 'amosync-form__add', text);
      button.type = 'button';
      button.setAttribute('data-action', action);
      button.addEventListener('click', function () {
        add();
      });
      return button;
    }

    function buildForm(settings, choices) {
      var fields = settings.fields || {};
      var consent = settings.consent || {};
      var root = element('form', 'amosync-form');
      root.setAttribute('data-amosync', 'settings');
      root.noValidate = true;
      form = {
        root: root,
        choices: choices,
        rules: element('div'),
        pairs: element('div'),
        noRules: element('p', 'amosync-form__empty', t('form.no_rules')),
        message: element('div', 'amosync__message'),
        save: element('button', 'amosync__button', t('form.save'))
      };
      root.appendChild(element('div', 'amosync__title', t('form.title')));

      var lists = formPart('lists', t('form.lists'));
      lists.appendChild(element('div', 'amosync-form__note', t('form.lists_hint')));
      ['lists', 'tags', 'pipelines'].forEach(function (part) {
        lists.appendChild(choicesError(part));
      });
      lists.appendChild(form.noRules);
      lists.appendChild(form.rules);
      lists.appendChild(addButton(t('form.add_rule'), 'add-rule', addRule));
      root.appendChild(lists);

      var sent = formPart('fields', t('form.fields'));
      sent.appendChild(checkbox('phone', fields.phone, t('form.phone')));
      var region = labelled(t('form.phone_region'), regionControl(fields.phone_region || 'RU'));
      region.className = 'amosync-form__narrow';
      sent.appendChild(region);
      sent.appendChild(checkbox('tags', fields.tags, t('form.tags')));
      sent.appendChild(element('div', 'amosync-form__note', t('form.custom_hint')));
      sent.appendChild(choicesError('fields'));
      sent.appendChild(form.pairs);
      sent.appendChild(addButton(t('form.add_field'), 'add-field', addPair));
      root.appendChild(sent);

      var back = formPart('consent', t('form.consent'));
      back.appendChild(checkbox('consent_enabled', consent.enabled !== false, t('form.consent_enabled')));
      var tag = labelled(t('form.consent_tag'), textInput('consent_tag', consent.tag || 'unsubscribed'));
      tag.className = 'amosync-form__narrow';
      back.appendChild(tag);
      back.appendChild(checkbox('consent_note', consent.note !== false, t('form.consent_note')));
      root.appendChild(back);

      root.appendChild(form.message);
      form.save.type = 'submit';
      form.save.setAttribute('data-action', 'save-settings');
      root.appendChild(form.save);
      root.addEventListener('submit', function (event) {
        event.preventDefault();
        saveSettings();
      });

      (settings.lists || []).forEach(addRule);
      (fields.custom || []).forEach(addPair);
      updateEmpty();
      return root;
    }

    // The form as the §8 object; throws {text} for a rule or pair the user left half done.
    function readForm() {
      var root = form.root;
      var lists = [];
      Array.prototype.forEach.call(form.rules.querySelectorAll('[data-rule]'), function (row) {
        var list = row.querySelector('[name=list_id]');
        var tags = row.querySelector('[name=tags_any]');
        var statuses = row.querySelector('[name=lead_statuses]');
        var rule = {
          list_id: positive(list.value),
          tags_any: tags.tagName === 'SELECT' ? selectedValues(tags) : commaList(tags.value),
          lead_statuses: selectedValues(statuses).map(function (key) {
            var ids = key.split(':');
            return { pipeline_id: Number(ids[0]), status_id: Number(ids[1]) };
          })
        };
        var conditions = rule.tags_any.length + rule.lead_statuses.length;
        if (!rule.list_id && !conditions && !String(list.value).trim()) {
          return; // a rule added and left empty
        }
        if (!rule.list_id) {
          throw { text: t('form.rule_needs_list'), target: list };
        }
        if (!conditions) {
          throw { text: t('form.rule_needs_condition'), target: tags };
        }
        lists.push(rule);
      });
      var custom = [];
      Array.prototype.forEach.call(form.pairs.querySelectorAll('[data-pair]'), function (row) {
        var field = row.querySelector('[name=amocrm_field_id]');
        var name = row.querySelector('[name=unisender_field]');
        var pair = { amocrm_field_id: positive(field.value), unisender_field: name.value.trim() };
        if (!pair.amocrm_field_id && !pair.unisender_field) {
          return;
        }
        if (!pair.amocrm_field_id || !pair.unisender_field) {
          throw { text: t('form.pair_incomplete'), target: pair.amocrm_field_id ? name : field };
        }
        custom.push(pair);
      });
      var tag = root.querySelector('[name=consent_tag]').value.trim();
      var enabled = root.querySelector('[name=consent_enabled]').checked;
      if (enabled && !tag) {
        throw { text: t('form.consent_tag_missing'), target: root.querySelector('[name=consent_tag]') };
      }
      return {
        fields: {
          phone: root.querySelector('[name=phone]').checked,
          phone_region: root.querySelector('[name=phone_region]').value,
          tags: root.querySelector('[name=tags]').checked,
          custom: custom
        },
        lists: lists,
        consent: {
          enabled: enabled,
          tag: tag || 'unsubscribed',
          note: root.querySelector('[name=consent_note]').checked
        }
      };
    }

    function saveSettings() {
      var accountId = currentAccountId();
      if (!form || !accountId || form.saving) {
        return;
      }
      var body;
      try {
        body = readForm();
      } catch (problem) {
        setFormMessage(problem.text, 'error');
        if (problem.target && typeof problem.target.focus === 'function') {
          problem.target.focus();
        }
        return;
      }
      form.saving = true;
      form.save.disabled = true;
      setFormMessage(t('form.saving'), 'info');
      request('PUT', '/accounts/' + accountId + '/settings', body).then(
        function (answer) {
          answer = answer || {};
          var sync = answer.sync;
          var started = sync && sync.run_id !== undefined && sync.run_id !== null;
          var choices = form ? form.choices : null;
          if (form && choices) {
            showForm(answer, choices);
          }
          setFormMessage(started ? t('form.saved_sync') : t('form.saved'), 'success');
          if (started) {
            watchRun(sync.run_id, { status: sync.status || 'queued' });
          }
        },
        function (error) {
          if (form) {
            form.saving = false;
            form.save.disabled = false;
          }
          setFormMessage(formError(error), 'error');
        }
      );
    }

    function showForm(settings, choices) {
      if (!formArea) {
        return;
      }
      var old = form && form.root;
      var built = buildForm(settings || {}, choices || {});
      if (old && old.parentNode) {
        old.parentNode.replaceChild(built, old);
      } else {
        formArea.appendChild(built);
      }
    }

    function loadForm() {
      var accountId = currentAccountId();
      if (!accountId || !formArea) {
        return;
      }
      var path = '/accounts/' + accountId + '/settings';
      var settings = request('GET', path);
      // An older service without the pickers: every part typed by id.
      var choices = request('GET', path + '/choices').then(null, function (error) {
        var code = error.code || 'network';
        return { lists: null, fields: null, pipelines: null, tags: null, errors: { lists: code, fields: code, pipelines: code, tags: code } };
      });
      Promise.all([settings, choices]).then(
        function (loaded) {
          showForm(loaded[0] || {}, loaded[1] || {});
        },
        function (error) {
          if (error.status === 404 && error.code === 'account_not_found') {
            formTimer = setTimeout(loadForm, CONNECTING_POLL_MS); // still being installed
            return;
          }
          if (formArea) {
            var note = element('div', 'amosync__message', formError(error));
            note.setAttribute('data-kind', 'error');
            note.setAttribute('data-amosync', 'settings-error');
            formArea.textContent = '';
            formArea.appendChild(note);
          }
        }
      );
    }

    // Draws the panel into `container` (after amoCRM's own settings fields when present).
    // `withForm`: the settings form under the panel (the advanced settings page, which has
    // room for it; the modal keeps to the key).
    function mount(container, withForm) {
      if (!container) {
        return;
      }
      injectStyle();
      unmount();
      view = buildPanel();
      var fields = container.querySelector('.widget_settings_block');
      if (fields && fields.parentNode) {
        view.hasFields = true;
        fields.parentNode.insertBefore(view.root, fields.nextSibling);
      } else {
        container.appendChild(view.root);
      }
      if (withForm) {
        formArea = element('div');
        formArea.setAttribute('data-amosync', 'settings-area');
        view.root.parentNode.insertBefore(formArea, view.root.nextSibling);
      }
      // The form after the account: its main list is left out of the rules' lists.
      refreshAccount().then(loadForm, loadForm);
    }

    function unmount() {
      stopWatching();
      clearAccountTimer();
      if (formTimer !== null) {
        clearTimeout(formTimer);
        formTimer = null;
      }
      if (view && view.root.parentNode) {
        view.root.parentNode.removeChild(view.root);
      }
      if (formArea && formArea.parentNode) {
        formArea.parentNode.removeChild(formArea);
      }
      view = null;
      form = null;
      formArea = null;
    }

    this.callbacks = {
      render: function () {
        return true;
      },
      init: function () {
        return true;
      },
      bind_actions: function () {
        return true;
      },
      settings: function ($modal_body) {
        mount(toElement($modal_body));
        return true;
      },
      advancedSettings: function () {
        mount(document.getElementById('work-area-' + widgetCode()), true);
        return true;
      },
      // data: {active: 'Y' | 'N', fields: {unisender_key, list_id}}. amoCRM saves the
      // settings only when this returns true, and waits for no promise: so a new key is
      // sent to the service and false returned; once the service has accepted it, the save
      // button is pressed again and this time the checked key is let through. A key
      // Unisender refuses is reported at once and never saved in amoCRM.
      onSave: function (data) {
        var fields = (data && data.fields) || {};
        if (data && data.active === 'N') {
          return true; // the widget is being switched off: nothing to connect
        }
        var key = String(fields.unisender_key || '').trim();
        var list = listField(fields.list_id);
        if (!key) {
          setMessage(t('errors.no_key'), 'error');
          return false;
        }
        if (approved && approved.key === key && approved.list === list) {
          approved = null;
          return true;
        }
        var saved = (self.get_settings && self.get_settings()) || {};
        var unchanged =
          key === String(saved.unisender_key || '').trim() && list === listField(saved.list_id);
        if (unchanged && view && view.connected) {
          return true; // the key amoCRM holds is the one the service has: nothing to check
        }
        if (checking) {
          return false; // this key's check is still running
        }
        checking = true;
        connect(key, list).then(function (accepted) {
          checking = false;
          if (accepted) {
            approved = { key: key, list: list };
            saveAgain();
          }
        });
        return false;
      },
      destroy: function () {
        unmount();
      }
    };

    return this;
  };
});
