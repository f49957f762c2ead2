// Tessera's own pages: one small script, no framework, no build step.
// It talks to the API on the page's own origin with the session cookie
// (credentials: 'same-origin'), sends the CSRF token it was given at login
// (X-CSRF-Token; GET /user/csrf fetches it again), shows the API's errMsg
// (the browser's Accept-Language picks its language), counts down on a 429's
// Retry-After, says "try again" on a 503, and, in --tokens signed mode,
// refreshes once on a 401 and retries.
(function () {
  'use strict';

  var TEXT = {
    zh: {
      unreachable: '无法连接服务器，请检查网络后重试。',
      unavailable: '服务暂时不可用，请稍后重试。',
      unknown: '出错了，请重试。',
      resendIn: '{s} 秒后可重新发送',
      codeSent: '验证码已发送。',
      registered: '注册成功，请登录。',
      loginFirst: '请先登录。',
      loggedOut: '已退出登录。',
      thisDevice: '本设备',
      end: '结束',
      unknownDevice: '未知设备',
      address: '地址',
      lastSeen: '最近活动',
      since: '登录于',
      ended: '已结束该设备的登录。',
      endedOthers: '已结束 {n} 个其他设备的登录。',
      signedInAs: '已登录：{name}',
      male: '男',
      female: '女'
    },
    en: {
      unreachable: 'Cannot reach the server; check the connection and try again.',
      unavailable: 'The service is unavailable for a moment; please try again shortly.',
      unknown: 'Something went wrong; please try again.',
      resendIn: 'Resend in {s} s',
      codeSent: 'The code is on its way.',
      registered: 'Registered. Please log in.',
      loginFirst: 'Please log in first.',
      loggedOut: 'You are logged out.',
      thisDevice: 'this device',
      end: 'End',
      unknownDevice: 'Unknown device',
      address: 'Address',
      lastSeen: 'Last seen',
      since: 'Signed in',
      ended: 'That device is logged out.',
      endedOthers: '{n} other device(s) logged out.',
      signedInAs: 'Signed in as {name}',
      // The static chrome (data-i18n keys); the HTML itself is Chinese.
      homeTitle: 'Tessera account',
      homeIntro: 'Register with your phone, log in with a password or a text-message code, and see and manage your signed-in devices under "My account".',
      navRegister: 'Register',
      navLogin: 'Log in',
      navAccount: 'My account',
      docs: 'Documentation (README)',
      home: 'Home',
      registerTitle: 'Register · Tessera',
      registerHeading: 'Register',
      phone: 'Phone number',
      code: 'Code from the text message',
      sendCode: 'Send code',
      name: 'Name',
      gender: 'Gender',
      male: 'Male',
      female: 'Female',
      age: 'Age',
      password: 'Password',
      passwordHint: '8 to 128 characters',
      registerButton: 'Register',
      haveAccount: 'Already registered?',
      loginTitle: 'Log in · Tessera',
      loginHeading: 'Log in',
      loginWith: 'Log in with',
      byPassword: 'Password',
      byCode: 'Text-message code',
      loginButton: 'Log in',
      noAccount: 'No account yet?',
      accountTitle: 'My account · Tessera',
      accountHeading: 'My account',
      profile: 'Profile',
      devices: 'Signed-in devices',
      endOthers: 'Log out all other devices',
      logoutEverywhere: 'Log out everywhere',
      logout: 'Log out'
    }
  };

  // The first of the browser's languages that we have decides; Chinese
  // otherwise. The server applies the same rule to Accept-Language, which
  // the browser derives from the same list.
  var lang = 'zh';
  var prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
  for (var i = 0; i < prefs.length; i++) {
    var p = String(prefs[i]).toLowerCase();
    if (p === 'en' || p.indexOf('en-') === 0) { lang = 'en'; break; }
    if (p === 'zh' || p.indexOf('zh-') === 0) { break; }
  }

  function t(key, values) {
    var s = TEXT[lang][key] || TEXT.zh[key] || key;
    for (var k in values || {}) s = s.replace('{' + k + '}', values[k]);
    return s;
  }

  function translate() {
    if (lang !== 'en') return;
    document.documentElement.lang = 'en';
    var nodes = document.querySelectorAll('[data-i18n]');
    for (var i = 0; i < nodes.length; i++) {
      var text = TEXT.en[nodes[i].getAttribute('data-i18n')];
      if (text) nodes[i].textContent = text;
    }
  }

  function $(id) { return document.getElementById(id); }

  // ---- the API -----------------------------------------------------------

  var CSRF_KEY = 'tessera.csrf';
  var NOTE_KEY = 'tessera.note';
  var PHONE_KEY = 'tessera.phone';
  var canRefresh = true; // false once /auth/refresh turned out not to exist (opaque tokens)

  function remember(data) {
    if (data && data.csrfToken) sessionStorage.setItem(CSRF_KEY, data.csrfToken);
  }

  function forget() { sessionStorage.removeItem(CSRF_KEY); }

  // One request; resolves to {ok, data} or {ok: false, status, code, message,
  // retryAfter, unavailable}. Never rejects.
  function send(method, path, fields) {
    var init = { method: method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (fields) {
      init.headers['Content-Type'] = 'application/x-www-form-urlencoded';
      init.body = new URLSearchParams(fields).toString();
    }
    var csrf = sessionStorage.getItem(CSRF_KEY);
    if (method !== 'GET' && csrf) init.headers['X-CSRF-Token'] = csrf;
    return fetch(path, init).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (body) {
        var data = body && body.data;
        if (res.ok && body && body.status === 'success') return { ok: true, data: data };
        var out = {
          ok: false,
          status: res.status,
          code: data && data.errCode,
          message: (data && data.errMsg) || t('unknown')
        };
        if (res.status === 429) out.retryAfter = parseInt(res.headers.get('Retry-After'), 10) || 60;
        if (res.status === 503) { out.unavailable = true; out.message = t('unavailable'); }
        return out;
      });
    }, function () {
      return { ok: false, status: 0, unavailable: true, message: t('unreachable') };
    });
  }

  // In --tokens signed mode the access token lapses every few minutes: on a
  // 401, POST /auth/refresh (the refresh cookie goes only there) once, then
  // retry. With opaque sessions that path does not exist (404): give up.
  function refresh() {
    if (!canRefresh) return Promise.resolve(false);
    return send('POST', '/auth/refresh').then(function (r) {
      if (r.ok) { remember(r.data); return true; }
      if (r.status === 404) canRefresh = false;
      return false;
    });
  }

  function api(method, path, fields) {
    return send(method, path, fields).then(function (r) {
      if (r.ok || r.status !== 401 || r.code !== 20003) return r;
      return refresh().then(function (refreshed) { return refreshed ? send(method, path, fields) : r; });
    });
  }

  // A session opened in another tab has no token here yet.
  function ensureCsrf() {
    if (sessionStorage.getItem(CSRF_KEY)) return Promise.resolve();
    return api('GET', '/user/csrf').then(function (r) { if (r.ok) remember(r.data); });
  }

  // ---- page helpers --------------------------------------------------------

  function show(text, kind) {
    var el = $('msg');
    if (!el) return;
    el.textContent = text;
    el.className = 'msg ' + (kind || 'error');
    el.hidden = !text;
  }

  function showFailure(r) { show(r.message, r.unavailable ? 'warn' : 'error'); }

  function note(text) { sessionStorage.setItem(NOTE_KEY, text); }

  function showNote() {
    var text = sessionStorage.getItem(NOTE_KEY);
    if (text) { sessionStorage.removeItem(NOTE_KEY); show(text, 'ok'); }
  }

  function busy(button, on) { if (button) button.disabled = on; }

  // The send-code button: counts down after a send (one code per phone per
  // minute) and for as long as a 429's Retry-After says.
  function sendCodeButton(phoneInput) {
    var button = $('send-code');
    var timer = null;
    function countdown(seconds) {
      clearInterval(timer);
      var left = seconds;
      button.disabled = true;
      button.textContent = t('resendIn', { s: left });
      timer = setInterval(function () {
        left -= 1;
        if (left > 0) { button.textContent = t('resendIn', { s: left }); return; }
        clearInterval(timer);
        button.disabled = false;
        button.textContent = t('sendCode');
      }, 1000);
    }
    button.addEventListener('click', function () {
      busy(button, true);
      api('POST', '/user/getotp', { telphone: phoneInput.value.trim() }).then(function (r) {
        if (r.ok) { show(t('codeSent'), 'ok'); countdown(60); return; }
        showFailure(r);
        if (r.retryAfter) countdown(r.retryAfter); else busy(button, false);
      });
    });
  }

  // ---- the pages -------------------------------------------------------------

  var pages = {};

  pages.home = function () {
    api('GET', '/user/me').then(function (r) {
      if (!r.ok) return;
      var who = $('whoami');
      who.textContent = t('signedInAs', { name: r.data.name });
      who.hidden = false;
    });
  };

  pages.register = function () {
    var form = $('register-form');
    sendCodeButton($('phone'));
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var button = $('register');
      busy(button, true);
      api('POST', '/user/register', {
        telphone: $('phone').value.trim(),
        otpCode: $('code').value.trim(),
        name: $('name').value.trim(),
        gender: $('gender').value,
        age: $('age').value.trim(),
        password: $('password').value
      }).then(function (r) {
        busy(button, false);
        if (!r.ok) { showFailure(r); return; }
        sessionStorage.setItem(PHONE_KEY, $('phone').value.trim());
        note(t('registered'));
        location.assign('/ui/login');
      });
    });
  };

  pages.login = function () {
    var phone = $('phone');
    phone.value = sessionStorage.getItem(PHONE_KEY) || '';
    showNote();
    var byOtp = $('by-otp');
    function switchMethod() {
      $('password-part').hidden = byOtp.checked;
      $('otp-part').hidden = !byOtp.checked;
    }
    $('by-password').addEventListener('change', switchMethod);
    byOtp.addEventListener('change', switchMethod);
    switchMethod();
    sendCodeButton(phone);
    $('login-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var button = $('login');
      var fields = { telphone: phone.value.trim() };
      if (byOtp.checked) fields.otpCode = $('code').value.trim(); else fields.password = $('password').value;
      busy(button, true);
      api('POST', '/user/login', fields).then(function (r) {
        busy(button, false);
        if (!r.ok) { showFailure(r); return; }
        remember(r.data);
        sessionStorage.setItem(PHONE_KEY, fields.telphone);
        location.assign('/ui/account');
      });
    });
  };

  function toLogin(text) {
    forget();
    note(text);
    location.assign('/ui/login');
  }

  function when(ms) { return ms ? new Date(ms).toLocaleString(lang === 'en' ? 'en' : 'zh-CN') : '—'; }

  pages.account = function () {
    function device(s) {
      var li = document.createElement('li');
      if (s.current) li.className = 'current';
      var head = document.createElement('p');
      var ua = document.createElement('strong');
      ua.textContent = s.userAgent || t('unknownDevice');
      head.appendChild(ua);
      if (s.current) {
        var badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = t('thisDevice');
        head.appendChild(document.createTextNode(' '));
        head.appendChild(badge);
      }
      li.appendChild(head);
      var meta = document.createElement('p');
      meta.className = 'fine';
      meta.textContent = t('address') + ': ' + (s.ip || '—') + ' · ' + t('lastSeen') + ': ' + when(s.lastSeen) +
        ' · ' + t('since') + ': ' + when(s.createdAt);
      li.appendChild(meta);
      if (!s.current) {
        var end = document.createElement('button');
        end.type = 'button';
        end.className = 'end';
        end.textContent = t('end');
        end.setAttribute('aria-label', t('end') + ': ' + (s.userAgent || t('unknownDevice')));
        end.addEventListener('click', function () {
          busy(end, true);
          api('DELETE', '/user/sessions/' + encodeURIComponent(s.id)).then(function (r) {
            if (!r.ok) { busy(end, false); return failed(r); }
            show(t('ended'), 'ok');
            loadDevices();
          });
        });
        li.appendChild(end);
      }
      return li;
    }
    function failed(r) {
      if (r.status === 401) return toLogin(t('loginFirst'));
      showFailure(r);
    }
    function loadDevices() {
      return api('GET', '/user/sessions').then(function (r) {
        if (!r.ok) return failed(r);
        var list = $('devices');
        list.textContent = '';
        r.data.forEach(function (s) { list.appendChild(device(s)); });
      });
    }
    api('GET', '/user/me').then(function (r) {
      if (!r.ok) return failed(r);
      $('p-name').textContent = r.data.name;
      $('p-phone').textContent = r.data.telephone;
      $('p-gender').textContent = r.data.gender === 2 ? t('female') : t('male');
      $('p-age').textContent = r.data.age;
      return ensureCsrf().then(loadDevices);
    });
    $('end-others').addEventListener('click', function () {
      api('DELETE', '/user/sessions').then(function (r) {
        if (!r.ok) return failed(r);
        show(t('endedOthers', { n: r.data.revoked }), 'ok');
        loadDevices();
      });
    });
    $('logout-everywhere').addEventListener('click', function () {
      api('POST', '/user/logout-everywhere').then(function (r) {
        if (!r.ok && r.status !== 401) return showFailure(r);
        toLogin(t('loggedOut'));
      });
    });
    $('logout').addEventListener('click', function () {
      api('POST', '/user/logout').then(function (r) {
        if (!r.ok && r.status !== 401) return showFailure(r);
        toLogin(t('loggedOut'));
      });
    });
  };

  translate();
  var page = pages[document.body.getAttribute('data-page')];
  if (page) page();
})();
