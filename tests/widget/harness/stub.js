/*
 * A small stand-in for amoCRM's widget environment, enough to run the built script.js:
 * an AMD define(), the AMOCRM globals, a jQuery-like wrapper for $modal_body, and the system
 * widget object whose $authorizedAjax sends the disposable token in X-Auth-Token, like
 * amoCRM's does (its result offers jQuery Deferred's done/fail/always).
 *
 * Query parameters: lang (ru|en), token, account, area (settings|advanced_settings).
 * The built widget's files are served under /widget/.
 */
(function () {
  'use strict';

  var query = new URLSearchParams(window.location.search);
  var lang = query.get('lang') || 'ru';
  var token = query.get('token') || '';
  var accountId = Number(query.get('account'));
  var area = query.get('area') || 'settings';
  var code = 'amosync_test';
  var root = '/widget/';

  // saves: the settings amoCRM stored (onSave returned true); onSave: every return value.
  window.__stand = { notifications: [], statuses: [], saves: [], onSave: [], ready: false, widget: null };
  document.documentElement.lang = lang;

  var loaded = null;
  window.define = function (deps, factory) {
    if (typeof deps === 'function') {
      factory = deps;
      deps = [];
    }
    loaded = { deps: deps, factory: factory };
  };
  window.define.amd = { jQuery: true };

  window.AMOCRM = {
    constant: function (name) {
      if (name === 'account') {
        return { id: accountId, subdomain: 'acme', language: lang };
      }
      if (name === 'user') {
        return { id: 7, name: 'Admin' };
      }
      return null;
    },
    notifications: {
      show_message: function (message) {
        window.__stand.notifications.push(message);
      }
    }
  };
  window.APP = window.AMOCRM;

  function $(target) {
    var nodes = typeof target === 'string' ? Array.prototype.slice.call(document.querySelectorAll(target)) : [target];
    var wrapped = { length: nodes.length, jquery: 'stand' };
    nodes.forEach(function (node, index) {
      wrapped[index] = node;
    });
    return wrapped;
  }

  // jQuery.ajax semantics the widget may rely on: with dataType 'json' a 2xx whose body is
  // empty or not JSON fails (parsererror); the fail callback gets (jqXHR, textStatus, error).
  function authorizedAjax(options) {
    var method = String(options.method || options.type || 'GET').toUpperCase();
    var headers = { 'X-Auth-Token': token };
    if (options.contentType) {
      headers['Content-Type'] = options.contentType;
    }
    var outcome = fetch(options.url, { method: method, headers: headers, body: options.data }).then(
      function (response) {
        return response.text().then(function (text) {
          var xhr = { status: response.status, statusText: response.statusText, responseText: text };
          var data;
          var parsed = true;
          try {
            data = text ? JSON.parse(text) : undefined;
          } catch (e) {
            parsed = false;
          }
          if (parsed && data !== undefined) {
            xhr.responseJSON = data;
          }
          var ok = response.ok && (options.dataType !== 'json' || (parsed && data !== undefined));
          return { ok: ok, data: data, xhr: xhr };
        });
      },
      function () {
        return { ok: false, xhr: { status: 0, statusText: 'error', responseText: '' } };
      }
    );
    var deferred = {
      done: function (callback) {
        outcome.then(function (result) {
          if (result.ok) {
            callback(result.data, 'success', result.xhr);
          }
        });
        return deferred;
      },
      fail: function (callback) {
        outcome.then(function (result) {
          if (!result.ok) {
            callback(result.xhr, 'error', result.xhr.statusText);
          }
        });
        return deferred;
      },
      always: function (callback) {
        outcome.then(function () {
          callback();
        });
        return deferred;
      }
    };
    return deferred;
  }

  function renderModal(manifest, langs) {
    var stand = document.getElementById('stand');
    var modal = document.createElement('div');
    modal.className = 'modal';
    modal.id = 'modal';
    var title = document.createElement('h1');
    var logo = document.createElement('img');
    logo.src = root + 'images/logo_min.png';
    logo.alt = '';
    title.appendChild(logo);
    title.appendChild(document.createTextNode(langs.widget.name));
    modal.appendChild(title);
    var body = document.createElement('div');
    body.className = 'modal-body';
    var block = document.createElement('div');
    block.className = 'widget_settings_block';
    Object.keys(manifest.settings || {}).forEach(function (key) {
      var field = manifest.settings[key];
      var path = field.name.split('.');
      var label = document.createElement('label');
      label.textContent = langs[path[0]][path[1]];
      var input = document.createElement('input');
      input.name = key;
      input.type = field.type === 'pass' ? 'password' : 'text';
      label.appendChild(input);
      block.appendChild(label);
    });
    body.appendChild(block);
    modal.appendChild(body);
    var save = document.createElement('button');
    save.id = 'save';
    save.className = 'js-widget-save'; // amoCRM's save button class
    save.type = 'button';
    save.textContent = lang === 'ru' ? 'Сохранить' : 'Save';
    modal.appendChild(save);
    stand.appendChild(modal);
    return { body: body, block: block, save: save };
  }

  function start(manifest, langs) {
    var deps = loaded.deps.map(function (name) {
      if (name === 'jquery') {
        return $;
      }
      throw new Error('the stand has no module ' + name);
    });
    var CustomWidget = loaded.factory.apply(null, deps);
    var settings = { widget_code: code };
    var system = {
      langs: langs,
      params: { widget_code: code, path: root },
      i18n: function (key) {
        return langs[key];
      },
      get_settings: function () {
        return settings;
      },
      set_status: function (status) {
        window.__stand.statuses.push(status);
      },
      system: function () {
        return { area: area, amouser_id: 7, domain: 'acme.amocrm.ru', subdomain: 'acme' };
      },
      get_version: function () {
        return manifest.widget.version;
      },
      $authorizedAjax: authorizedAjax
    };
    // amoCRM runs script.js's constructor over its own widget object.
    var widget = Object.create(system);
    CustomWidget.call(widget);
    window.__stand.widget = widget;
    widget.callbacks.render();
    widget.callbacks.init();
    widget.callbacks.bind_actions();
    if (area === 'advanced_settings') {
      var work = document.createElement('div');
      work.id = 'work-area-' + code;
      document.getElementById('stand').appendChild(work);
      widget.callbacks.advancedSettings();
    } else {
      var modal = renderModal(manifest, langs);
      widget.callbacks.settings($(modal.body));
      // amoCRM stores the fields only when onSave returns true.
      modal.save.addEventListener('click', function () {
        var fields = {};
        Array.prototype.forEach.call(modal.block.querySelectorAll('input'), function (input) {
          fields[input.name] = input.value;
        });
        var result = widget.callbacks.onSave({ active: 'Y', fields: fields });
        window.__stand.onSave.push(result);
        if (result === true) {
          Object.keys(fields).forEach(function (name) {
            settings[name] = fields[name];
          });
          window.__stand.saves.push(fields);
        }
      });
    }
    window.__stand.ready = true;
  }

  Promise.all([
    fetch(root + 'manifest.json').then(function (r) {
      return r.json();
    }),
    fetch(root + 'i18n/' + lang + '.json').then(function (r) {
      return r.json();
    })
  ]).then(function (files) {
    var script = document.createElement('script');
    script.src = root + 'script.js';
    script.onload = function () {
      start(files[0], files[1]);
    };
    document.head.appendChild(script);
  });
})();
