/*
 * amosync widget for amoCRM: connects the account to Unisender and shows the sync.
 *
 * - Settings modal (location "settings"): amoCRM renders the manifest's fields (Unisender API
 *   key, optional list ID); below them this script shows whether Unisender is connected, a
 *   "sync now" button and the progress of the running sync. Saving the settings sends the key
 *   to the amosync service, which checks it with Unisender and starts the first full sync.
 * - Advanced settings page (location "advanced_settings"): the same panel, full page.
 *
 * Every call goes through self.$authorizedAjax, which adds amoCRM's disposable token in the
 * X-Auth-Token header; the service trusts the account id in that token, not the one sent.
 * Only DOM APIs are used (no jQuery plugins, no CDN), and all text comes from i18n/.
 * BACKEND_URL below is filled in by the builder (amosync widget build --backend-url).
 */
define([], function () {
  'use strict';

  var BACKEND_URL = '__AMOSYNC_BACKEND_URL__';
  var POLL_MS = 1000;
  var MAX_POLL_ERRORS = 3;
  var STYLE_ID = 'amosync-widget-style';
  var FINAL = { done: true, failed: true };
  var COUNTS = ['fetched', 'synced', 'unsynced', 'failed'];

  var CSS = [
    '.amosync{margin:16px 0;padding:16px;border:1px solid #dfe4ea;border-radius:6px;',
    'background:#fafbfc;color:#2e3640;font-size:14px;line-height:1.45}',
    '.amosync__title{font-weight:600;font-size:15px;margin-bottom:8px}',
    '.amosync__connection{display:flex;align-items:center;gap:8px;margin-bottom:4px}',
    '.amosync__connection::before{content:"";width:10px;height:10px;border-radius:50%;background:#b3bcc6}',
    '.amosync__connection[data-state=connected]::before{background:#27ae60}',
    '.amosync__connection[data-state=not_connected]::before{background:#e67e22}',
    '.amosync__connection[data-state=error]::before{background:#c0392b}',
    '.amosync__hint{color:#6b7785;font-size:13px;margin-bottom:8px}',
    '.amosync__message{margin:8px 0;padding:8px 10px;border-radius:4px;font-size:13px}',
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
    '.amosync__counts dt{color:#6b7785}.amosync__counts dd{margin:0;font-weight:600}'
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

  function runStorageKey(accountId) {
    return 'amosync.run.' + accountId;
  }

  // sessionStorage may be unavailable (privacy settings); remembering the run is a nicety.
  function remember(key, value) {
    try {
      if (value === null) {
        window.sessionStorage.removeItem(key);
      } else {
        window.sessionStorage.setItem(key, value);
      }
    } catch (e) {
      /* ignored */
    }
  }

  function recall(key) {
    try {
      return window.sessionStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }

  return function () {
    var self = this;
    var view = null;
    var pollTimer = null;
    var watchedRun = null;

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
              code: payload && payload.error,
              detail: payload && payload.detail
            });
          });
      });
    }

    function errorMessage(error) {
      if (!error || !error.status) {
        return t('errors.network');
      }
      var known = error.code && lookup('errors.' + error.code);
      if (known) {
        return known;
      }
      if (error.detail) {
        return String(error.detail);
      }
      return t('errors.unknown');
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
        connected: t('panel.connected'),
        not_connected: t('panel.not_connected'),
        error: t('panel.not_connected')
      }[state];
      view.connection.textContent = text;
      view.connection.setAttribute('data-state', state);
      view.hint.textContent = state === 'not_connected' ? t('panel.connect_hint') : '';
      view.connected = state === 'connected';
      updateButton();
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
      var text = t('panel.sync_' + status);
      if (status === 'failed' && progress.error) {
        text += ': ' + progress.error;
      }
      view.runStatus.textContent = text;
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
      var accountId = currentAccountId();
      var errors = 0;
      stopWatching();
      watchedRun = String(runId);
      remember(runStorageKey(accountId), watchedRun);
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
              remember(runStorageKey(accountId), null);
              stopWatching();
              if (progress.status === 'done') {
                refreshConnection();
              }
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
              remember(runStorageKey(accountId), null);
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

    function refreshConnection() {
      var accountId = currentAccountId();
      if (!accountId) {
        setConnection('error');
        setMessage(t('errors.no_account'), 'error');
        return Promise.resolve(false);
      }
      setConnection('checking');
      return request('GET', '/acchasuni?account_id=' + accountId).then(
        function (answer) {
          var connected = Boolean(answer && answer.connected);
          setConnection(connected ? 'connected' : 'not_connected');
          return connected;
        },
        function (error) {
          setConnection('error');
          setMessage(errorMessage(error), 'error');
          return false;
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

    // Sends the key to the service, which checks it with Unisender before storing it.
    function connect(key, listId) {
      var accountId = currentAccountId();
      if (!accountId) {
        setMessage(t('errors.no_account'), 'error');
        return Promise.resolve(false);
      }
      var body = { account_id: accountId, unisender_key: key };
      var list = String(listId === undefined || listId === null ? '' : listId).trim();
      if (list) {
        body.list_id = /^\d+$/.test(list) ? Number(list) : list;
      }
      setMessage(t('panel.saving_key'), 'info');
      return request('POST', '/vidget/unisender', body).then(
        function (answer) {
          setMessage(t('panel.key_saved'), 'success');
          refreshConnection();
          if (answer && answer.run_id) {
            watchRun(answer.run_id, { status: answer.status || 'queued' });
          }
          return true;
        },
        function (error) {
          setMessage(errorMessage(error), 'error');
          if (error.code === 'invalid_unisender_key') {
            setConnection('not_connected');
            if (typeof self.set_status === 'function') {
              self.set_status('error');
            }
          }
          return false;
        }
      );
    }

    function buildPanel() {
      var root = element('div', 'amosync');
      root.setAttribute('data-amosync', 'panel');
      var panel = {
        root: root,
        connected: false,
        connection: element('div', 'amosync__connection'),
        hint: element('div', 'amosync__hint'),
        message: element('div', 'amosync__message'),
        button: element('button', 'amosync__button', t('panel.sync_now')),
        progress: element('div', 'amosync__progress'),
        bar: element('div', 'amosync__bar'),
        fill: element('div', 'amosync__bar-fill'),
        runStatus: element('div', 'amosync__run-status'),
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
      panel.progress.appendChild(list);
      root.appendChild(element('div', 'amosync__title', t('panel.title')));
      root.appendChild(panel.connection);
      root.appendChild(panel.hint);
      root.appendChild(panel.message);
      root.appendChild(panel.button);
      root.appendChild(panel.progress);
      return panel;
    }

    // Draws the panel into `container` (after amoCRM's own settings fields when present).
    function mount(container) {
      if (!container) {
        return;
      }
      injectStyle();
      unmount();
      view = buildPanel();
      var fields = container.querySelector('.widget_settings_block');
      if (fields && fields.parentNode) {
        fields.parentNode.insertBefore(view.root, fields.nextSibling);
      } else {
        container.appendChild(view.root);
      }
      refreshConnection();
      var pending = recall(runStorageKey(currentAccountId()));
      if (pending) {
        watchRun(pending);
      }
    }

    function unmount() {
      stopWatching();
      if (view && view.root.parentNode) {
        view.root.parentNode.removeChild(view.root);
      }
      view = null;
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
        mount(document.getElementById('work-area-' + widgetCode()));
        return true;
      },
      // data: {active: 'Y' | 'N', fields: {unisender_key, list_id}}. The key is checked by the
      // service asynchronously; amoCRM keeps its copy of the settings either way.
      onSave: function (data) {
        var fields = (data && data.fields) || {};
        if (data && data.active === 'N') {
          return true; // the widget is being switched off: nothing to connect
        }
        var key = String(fields.unisender_key || '').trim();
        if (!key) {
          setMessage(t('errors.no_key'), 'error');
          return true;
        }
        connect(key, fields.list_id);
        return true;
      },
      destroy: function () {
        unmount();
      }
    };

    return this;
  };
});
