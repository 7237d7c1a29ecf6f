/*
 * notify-realtime.js: the browser client of the notification service's WebSocket API. No dependencies.
 *
 *   const realtime = NotifyRealtime.connect({
 *     token: () => fetch("/my-backend/realtime-token").then((r) => r.json()), // {token, expires_at, expires_in, url}
 *     onNotification: (frame) => { item.textContent = frame.text; },           // never innerHTML
 *   });
 *   // later: realtime.close();
 *
 * `token` is the page's callback: it asks the page's own backend, which calls POST /v1/realtime/tokens with its API
 * key and hands back the answer. The client connects to `url?token=…`, asks the service for a fresh token over the
 * open connection before the current one expires ({"action": "refresh"}), sends {"action": "ping"} every 5 minutes
 * (API Gateway closes a connection idle for 10, and a notification sent while the page reconnects finds no
 * connection), reconnects with exponential backoff and
 * jitter when the connection drops, and calls `token` again when it has no token left that is still good (or when the
 * service refused the one it had). A token's life is counted on this page's clock from `expires_in` (seconds) when it
 * arrives, so a clock set minutes wrong still refreshes in time; `expires_at`, when this clock reads it as sooner and
 * not past, wins (an answer a backend kept for a while). Each notification frame ({notification_id, delivery_key,
 * channel, topic, text, data?, created_at}) reaches `onNotification` once: a frame seen again (a retried delivery) is
 * dropped by its notification id and delivery key (two browser integrations of a topic reaching this page are two).
 */
(function (root, factory) {
  "use strict";
  if (typeof module === "object" && module.exports) {
    module.exports = factory();
  } else {
    root.NotifyRealtime = factory();
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  var DEFAULTS = {
    minDelayMs: 500, // first reconnect delay; doubles per failed attempt
    maxDelayMs: 30000, // the longest wait between two attempts
    refreshAheadMs: 60000, // ask for a new token this long before the current one expires (at most half its life)
    refreshTimeoutMs: 10000, // no answer to a refresh in this time: get a token from the page and reconnect
    remembered: 500, // notification ids kept to drop repeats
    keepAliveMs: 300000, // a ping this often on an open connection: API Gateway closes one idle for 10 minutes
  };

  function expiryOf(credentials) {
    var at = credentials && credentials.expiresAtMs;
    return typeof at === "number" && !isNaN(at) ? at : 0;
  }

  // The credentials of an answer, with when they expire on this page's clock: `expires_in` counted from now (the
  // page's clock may be minutes off the service's), or `expires_at` as this clock reads it when that is sooner and
  // not yet past (an answer a backend kept a while); `expires_at` alone for an answer without `expires_in`.
  function received(answer, url, nowMs) {
    var seconds = answer && typeof answer.expires_in === "number" ? answer.expires_in : NaN;
    var stated = Date.parse(answer && answer.expires_at);
    var counted = isFinite(seconds) && seconds > 0 ? nowMs + seconds * 1000 : NaN;
    var at = isNaN(counted) ? stated : !isNaN(stated) && stated > nowMs && stated < counted ? stated : counted;
    return { token: answer && answer.token, expires_at: answer && answer.expires_at, url: url, expiresAtMs: at };
  }

  function connect(options) {
    if (!options || typeof options.token !== "function" || typeof options.onNotification !== "function") {
      throw new TypeError("NotifyRealtime.connect needs token() and onNotification(frame)");
    }
    var settings = {};
    Object.keys(DEFAULTS).forEach(function (key) {
      settings[key] = options[key] !== undefined ? options[key] : DEFAULTS[key];
    });
    var Socket = options.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
    var now = options.now || Date.now;
    var random = options.random || Math.random;
    var timers = options.timers || { set: setTimeout.bind(null), clear: clearTimeout.bind(null) };
    var onStatus = options.onStatus || function () {};

    var credentials = null; // {token, expires_at, url, expiresAtMs}
    var socket = null;
    var attempts = 0;
    var stopped = false;
    var reconnectTimer = null;
    var refreshTimer = null;
    var refreshDeadline = null;
    var keepAliveTimer = null;
    var seen = [];
    var seenSet = Object.create(null);

    function status(state, detail) {
      try {
        onStatus(state, detail);
      } catch (ignored) {
        /* a page's status handler never stops the client */
      }
    }

    function good(candidate) {
      return candidate && candidate.token && candidate.url && expiryOf(candidate) - now() > 5000;
    }

    function credentialsNow() {
      if (good(credentials)) {
        return Promise.resolve(credentials);
      }
      return Promise.resolve()
        .then(function () {
          return options.token();
        })
        .then(function (answer) {
          var fresh = received(answer, answer && answer.url, now());
          if (!good(fresh)) {
            throw new Error("token() gave no usable {token, expires_in or expires_at, url}");
          }
          credentials = fresh;
          return fresh;
        });
    }

    function clearTimers() {
      [reconnectTimer, refreshTimer, refreshDeadline, keepAliveTimer].forEach(function (timer) {
        if (timer !== null) {
          timers.clear(timer);
        }
      });
      reconnectTimer = refreshTimer = refreshDeadline = keepAliveTimer = null;
    }

    function keepAlive() {
      keepAliveTimer = timers.set(function () {
        keepAliveTimer = null;
        if (socket && socket.readyState === 1) {
          socket.send(JSON.stringify({ action: "ping" }));
          keepAlive();
        }
      }, settings.keepAliveMs);
    }

    function scheduleRefresh() {
      if (refreshTimer !== null) {
        timers.clear(refreshTimer);
      }
      var left = expiryOf(credentials) - now();
      var ahead = Math.min(settings.refreshAheadMs, left / 2);
      refreshTimer = timers.set(refresh, Math.max(1000, left - ahead));
    }

    function refresh() {
      refreshTimer = null;
      if (!socket || socket.readyState !== 1) {
        return;
      }
      socket.send(JSON.stringify({ action: "refresh" }));
      refreshDeadline = timers.set(function () {
        refreshDeadline = null;
        renewThroughPage();
      }, settings.refreshTimeoutMs);
    }

    function renewThroughPage() {
      // The service did not refresh the token: a new one from the page, then a new connection with it.
      credentials = null;
      if (socket) {
        socket.close(4000, "token renewal");
      }
    }

    function remember(frame) {
      var id = frame.notification_id + "\n" + (typeof frame.delivery_key === "string" ? frame.delivery_key : "");
      if (seenSet[id]) {
        return false;
      }
      seenSet[id] = true;
      seen.push(id);
      if (seen.length > settings.remembered) {
        delete seenSet[seen.shift()];
      }
      return true;
    }

    function onMessage(event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (ignored) {
        return;
      }
      if (!frame || typeof frame !== "object") {
        return;
      }
      if (frame.type === "token" && frame.token) {
        if (refreshDeadline !== null) {
          timers.clear(refreshDeadline);
          refreshDeadline = null;
        }
        credentials = received(frame, credentials && credentials.url, now());
        scheduleRefresh();
        status("refreshed", frame.expires_at);
      } else if (frame.type === "error") {
        status("error", frame.message);
        if (refreshDeadline !== null) {
          timers.clear(refreshDeadline);
          refreshDeadline = null;
          renewThroughPage();
        }
      } else if (typeof frame.notification_id === "string" && remember(frame)) {
        options.onNotification(frame);
      }
    }

    function retryLater(reason) {
      if (stopped) {
        return;
      }
      var ceiling = Math.min(settings.maxDelayMs, settings.minDelayMs * Math.pow(2, attempts));
      attempts += 1;
      var delay = ceiling / 2 + random() * (ceiling / 2); // "equal jitter": never all pages at once
      status("reconnecting", { in_ms: Math.round(delay), reason: reason });
      reconnectTimer = timers.set(open, delay);
    }

    function open() {
      reconnectTimer = null;
      if (stopped) {
        return;
      }
      status("connecting");
      credentialsNow().then(
        function (current) {
          if (stopped) {
            return;
          }
          var separator = current.url.indexOf("?") >= 0 ? "&" : "?";
          var opened = false;
          var ws = new Socket(current.url + separator + "token=" + encodeURIComponent(current.token));
          socket = ws;
          ws.onopen = function () {
            opened = true;
            attempts = 0;
            status("open");
            scheduleRefresh();
            keepAlive();
          };
          ws.onmessage = onMessage;
          ws.onclose = function (event) {
            if (socket === ws) {
              socket = null;
            }
            clearTimers();
            if (!opened) {
              // A refused handshake shows as a close before open: the token may be expired or revoked.
              credentials = null;
            }
            retryLater(event && event.code);
          };
          ws.onerror = function () {
            /* a close follows */
          };
        },
        function (error) {
          retryLater(String(error && error.message ? error.message : error));
        }
      );
    }

    if (!Socket) {
      throw new Error("no WebSocket in this environment");
    }
    open();

    return {
      close: function () {
        stopped = true;
        clearTimers();
        if (socket) {
          socket.close(1000, "closed by the page");
          socket = null;
        }
        status("closed");
      },
      get connected() {
        return socket !== null && socket.readyState === 1;
      },
    };
  }

  return { connect: connect };
});
