// The demo page: a token from the stand-in backend, the browser client, each frame shown with textContent only.
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var userId = params.get("user_id") || "demo-user";
  var topics = params.get("topics") || "realtime/demo";
  var list = document.getElementById("notifications");
  var statusLine = document.getElementById("status");
  document.getElementById("user").textContent = userId;
  document.getElementById("topics").textContent = topics || "(none)";

  function token() {
    var query = new URLSearchParams({ user_id: userId, topics: topics });
    if (params.get("ttl_seconds")) {
      query.set("ttl_seconds", params.get("ttl_seconds"));
    }
    return fetch("/_realtime/token?" + query.toString()).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) {
          throw new Error(body && body.message ? body.message : "token refused (" + response.status + ")");
        }
        return body;
      });
    });
  }

  function show(frame) {
    var item = document.createElement("li");
    item.className = "notification";
    item.dataset.notificationId = frame.notification_id;
    var meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = frame.channel + "/" + frame.topic + " · " + frame.created_at;
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = frame.text; // never innerHTML: a notification is text, whatever it holds
    item.appendChild(meta);
    item.appendChild(text);
    list.insertBefore(item, list.firstChild);
  }

  function onStatus(state, detail) {
    statusLine.className = state;
    statusLine.textContent = state + (typeof detail === "string" ? ": " + detail : "");
    document.body.dataset.realtime = state;
  }

  window.realtime = NotifyRealtime.connect({ token: token, onNotification: show, onStatus: onStatus });

  document.getElementById("send").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = document.getElementById("text").value;
    fetch("/_realtime/send?" + new URLSearchParams({ text: text }).toString(), { method: "POST" });
  });
})();
