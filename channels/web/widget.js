/*
 * Switchboard chat widget. Plain JavaScript: no build step, no dependencies.
 *
 * Embed it with one line:
 *   <script src="https://your-gateway.example/widget.js" async></script>
 *
 * Optional attributes on that script tag:
 *   data-title="Support"      header text (default "Chat with us")
 *   data-open="true"          start opened
 *   data-token="<jwt>"        a visitor signed in on your site (HS256, see web.jwt_secret);
 *                             without it the widget uses an anonymous device id
 *   data-gateway="https://…"  the gateway, when widget.js is served from elsewhere
 *   data-max-upload-bytes="…" the largest file offered for upload (default 10 MiB; the gateway's
 *                             web.max_upload_bytes decides)
 *
 * Replies stream in through POST /v1/chat/stream; everything else that happens in the conversation
 * (expert messages, handoff notices, other tabs) arrives over a WebSocket, or server-sent events
 * where a WebSocket cannot open (see "Transports").
 * Pictures and PDFs go up through POST /v1/uploads and are attached to a message by id. The
 * visitor's earlier conversations are listed from GET /v1/conversations; one is current at a time.
 */
(function () {
  "use strict";
  if (window.SwitchboardWidget) return;

  var script = document.currentScript || {};
  var data = script.dataset || {};
  var base = (data.gateway || (script.src ? new URL(script.src, location.href).origin : location.origin)).replace(/\/+$/, "");
  var token = data.token || null;
  var maxUpload = parseInt(data.maxUploadBytes, 10) > 0 ? parseInt(data.maxUploadBytes, 10) : 10 * 1024 * 1024;
  var uploadTypes = ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"];
  var prefix = "switchboard:" + base + ":";

  function remember(key, value) {
    try {
      if (value == null) localStorage.removeItem(prefix + key);
      else localStorage.setItem(prefix + key, value);
    } catch (e) { /* storage disabled: the conversation lasts as long as the page */ }
  }
  function recall(key) {
    try { return localStorage.getItem(prefix + key); } catch (e) { return null; }
  }
  function randomId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  var deviceId = recall("device");
  if (!deviceId) { deviceId = "web-" + randomId(); remember("device", deviceId); }
  var conversationId = recall("conversation");

  function headers(json) {
    var h = {};
    if (json) h["Content-Type"] = "application/json";
    if (token) h["Authorization"] = "Bearer " + token; else h["X-Device-ID"] = deviceId;
    return h;
  }
  function identityQuery() {
    return token ? "access_token=" + encodeURIComponent(token) : "device_id=" + encodeURIComponent(deviceId);
  }

  // ---- Look ----------------------------------------------------------------------------------
  var css = [
    "#sbw-root{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2433}",
    "#sbw-root *{box-sizing:border-box}",
    "#sbw-launcher{display:flex;align-items:center;justify-content:center;width:58px;height:58px;border-radius:50%;border:0;background:#2f5bea;color:#fff;cursor:pointer;box-shadow:0 6px 20px rgba(20,40,120,.3);margin-left:auto}",
    "#sbw-panel{display:none;flex-direction:column;width:370px;max-width:calc(100vw - 40px);height:540px;max-height:calc(100vh - 110px);margin-bottom:12px;background:#fff;border-radius:14px;box-shadow:0 12px 40px rgba(20,30,60,.25);overflow:hidden}",
    "#sbw-root.sbw-open #sbw-panel{display:flex}",
    "#sbw-header{display:flex;align-items:center;gap:8px;padding:12px 14px;background:#2f5bea;color:#fff}",
    "#sbw-title{flex:1;font-weight:600}",
    "#sbw-header button{border:0;background:rgba(255,255,255,.18);color:#fff;border-radius:8px;padding:5px 9px;cursor:pointer;font:inherit;font-size:13px}",
    "#sbw-header button:disabled{opacity:.5;cursor:default}",
    "#sbw-status{padding:6px 14px;font-size:12.5px;color:#5b6478;background:#f3f5fa;border-bottom:1px solid #e6e9f2;display:none}",
    "#sbw-status.sbw-show{display:block}",
    "#sbw-messages{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:8px;background:#fafbfe}",
    ".sbw-msg{max-width:82%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;word-wrap:break-word}",
    ".sbw-user{align-self:flex-end;background:#2f5bea;color:#fff;border-bottom-right-radius:4px}",
    ".sbw-ai,.sbw-expert{align-self:flex-start;background:#eceff6;border-bottom-left-radius:4px}",
    ".sbw-expert{background:#e3f4e8}",
    ".sbw-expert::before{content:'Expert';display:block;font-size:11px;font-weight:600;color:#2e7d4f}",
    ".sbw-system{align-self:center;max-width:92%;background:none;color:#5b6478;font-size:13px;text-align:center;font-style:italic}",
    ".sbw-error{align-self:center;color:#b42318;font-size:13px}",
    ".sbw-typing{align-self:flex-start;color:#5b6478;font-size:13px;display:none}",
    ".sbw-typing.sbw-show{display:block}",
    "#sbw-form{display:flex;gap:8px;padding:10px;border-top:1px solid #e6e9f2}",
    "#sbw-input{flex:1;resize:none;border:1px solid #cfd5e3;border-radius:10px;padding:8px 10px;font:inherit;max-height:120px}",
    "#sbw-send{border:0;border-radius:10px;background:#2f5bea;color:#fff;padding:0 14px;font:inherit;cursor:pointer}",
    "#sbw-send:disabled{opacity:.5;cursor:default}",
    ".sbw-choices{align-self:flex-start;display:flex;flex-wrap:wrap;gap:6px;max-width:92%}",
    ".sbw-choice{border:1px solid #2f5bea;background:#fff;color:#2f5bea;border-radius:14px;padding:5px 11px;cursor:pointer;font:inherit;font-size:13px}",
    ".sbw-choice:hover{background:#eef2fd}",
    "#sbw-attach{position:relative;display:flex;align-items:center;justify-content:center;width:38px;border:1px solid #cfd5e3;border-radius:10px;color:#2f5bea;cursor:pointer;font-size:18px}",
    "#sbw-attach:focus-within{outline:2px solid #2f5bea;outline-offset:1px}",
    "#sbw-attach.sbw-busy{opacity:.5;cursor:default}",
    "#sbw-file{position:absolute;inset:0;width:100%;height:100%;opacity:0;cursor:pointer}",
    ".sbw-files{display:flex;flex-direction:column;gap:6px;margin-bottom:4px}",
    ".sbw-files:only-child{margin-bottom:0}",
    ".sbw-image{display:block;max-width:100%;max-height:220px;border-radius:8px;background:#fff}",
    ".sbw-file{border:0;border-radius:8px;padding:6px 9px;background:rgba(255,255,255,.85);color:#1d2433;cursor:pointer;font:inherit;font-size:13px;text-align:left}",
    "#sbw-conversations{display:none;flex:1;flex-direction:column;overflow-y:auto;padding:10px 14px;gap:8px;background:#fafbfe}",
    "#sbw-root.sbw-listing #sbw-conversations{display:flex}",
    "#sbw-root.sbw-listing #sbw-messages,#sbw-root.sbw-listing #sbw-form{display:none}",
    "#sbw-conversation-list{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:6px}",
    ".sbw-conversation{width:100%;border:1px solid #e0e4ee;background:#fff;border-radius:10px;padding:8px 11px;text-align:left;cursor:pointer;font:inherit;color:inherit}",
    ".sbw-conversation[aria-current=true]{border-color:#2f5bea;box-shadow:inset 3px 0 0 #2f5bea}",
    ".sbw-conversation small{display:block;color:#5b6478;font-size:12px}",
    "#sbw-new{border:0;border-radius:10px;background:#2f5bea;color:#fff;padding:8px 12px;font:inherit;cursor:pointer}",
    ".sbw-empty{color:#5b6478;font-size:13px;text-align:center}"
  ].join("\n");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var key in attrs) node.setAttribute(key, attrs[key]);
    if (text != null) node.textContent = text;
    return node;
  }

  var style = el("style", {}, css);
  var root = el("div", { id: "sbw-root" });
  var panel = el("div", { id: "sbw-panel", role: "dialog", "aria-label": data.title || "Chat with us" });
  var header = el("div", { id: "sbw-header" });
  var titleEl = el("span", { id: "sbw-title" }, data.title || "Chat with us");
  var humanBtn = el("button", { id: "sbw-human", type: "button", title: "Ask for a person" }, "Talk to a human");
  var listBtn = el("button", { id: "sbw-list", type: "button", "aria-expanded": "false", "aria-controls": "sbw-conversations" }, "Conversations");
  var conversationsView = el("div", { id: "sbw-conversations", role: "region", "aria-label": "Your conversations" });
  var newBtn = el("button", { id: "sbw-new", type: "button" }, "New conversation");
  var conversationList = el("ul", { id: "sbw-conversation-list" });
  var attach = el("label", { id: "sbw-attach", title: "Attach a picture or PDF" });
  var fileInput = el("input", { id: "sbw-file", type: "file", accept: uploadTypes.join(","), "aria-label": "Attach a picture or PDF" });
  var closeBtn = el("button", { id: "sbw-close", type: "button", "aria-label": "Close chat" }, "\u2715");
  var status = el("div", { id: "sbw-status", role: "status" });
  var list = el("div", { id: "sbw-messages", "aria-live": "polite" });
  var typing = el("div", { class: "sbw-typing" }, "typing\u2026");
  var form = el("form", { id: "sbw-form" });
  var input = el("textarea", { id: "sbw-input", rows: "1", placeholder: "Write a message\u2026", "aria-label": "Message" });
  var sendBtn = el("button", { id: "sbw-send", type: "submit" }, "Send");
  var launcher = el("button", { id: "sbw-launcher", type: "button", "aria-label": "Open chat" });
  var hint = el("div", { class: "sbw-msg sbw-system", id: "sbw-hint" }, "Ask us anything — we usually answer right away.");
  (function icon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "28");
    svg.setAttribute("height", "28");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z");
    svg.appendChild(path);
    launcher.appendChild(svg);
  })();

  header.append(titleEl, listBtn, humanBtn, closeBtn);
  list.append(hint, typing);
  attach.append(document.createTextNode("\ud83d\udcce"), fileInput);
  form.append(attach, input, sendBtn);
  conversationsView.append(newBtn, conversationList);
  panel.append(header, status, conversationsView, list, form);
  root.append(panel, launcher);

  // ---- Conversation state --------------------------------------------------------------------
  var rendered = {};        // message id -> bubble
  var pendingUser = [];     // own bubbles waiting for their stored id: {el, content}
  var ownReplyTo = null;    // id of the own message whose reply streams in through POST /v1/chat/stream
  var ownReply = null;      // the bubble that reply streams into
  var sending = false;
  var foreign = {};         // reply_to -> bubble, for replies streamed to another tab
  var events = null;
  var loaded = false;

  function scroll() { list.scrollTop = list.scrollHeight; }
  function bubble(role, text, attachments) {
    if (hint.parentNode) hint.remove();
    var node = el("div", { class: "sbw-msg sbw-" + role }, text);
    showFiles(node, attachments);
    list.insertBefore(node, typing);
    scroll();
    return node;
  }
  // A bubble's text, keeping the files shown above it.
  function setText(node, text) {
    var files = node.querySelector(".sbw-files");
    node.textContent = text;
    if (files) node.insertBefore(files, node.firstChild);
  }

  // ---- Files ---------------------------------------------------------------------------------
  // Stored files are private: they are fetched with the visitor's identity headers and shown
  // from memory (an <img src> could not send those headers to another origin).
  var objectUrls = [];
  function fetchMedia(id) {
    return fetch(base + "/v1/media/" + encodeURIComponent(id), { headers: headers(false) })
      .then(function (response) {
        if (!response.ok) throw new Error("The file is no longer available.");
        return response.blob();
      })
      .then(function (blob) { var url = URL.createObjectURL(blob); objectUrls.push(url); return url; });
  }
  function showFiles(node, attachments) {
    if (!attachments || !attachments.length) return;
    var box = el("div", { class: "sbw-files" });
    attachments.forEach(function (a) {
      var name = a.filename || (a.kind === "image" ? "picture" : "file");
      if (a.local || a.media_id) {
        if (String(a.mime_type || "").indexOf("image/") === 0 && a.mime_type !== "image/svg+xml") {
          var img = el("img", { class: "sbw-image", alt: name });
          if (a.local) img.src = a.local;
          else fetchMedia(a.media_id).then(function (url) { img.src = url; scroll(); }, function () { img.alt = name + " (unavailable)"; });
          img.addEventListener("load", scroll);
          box.appendChild(img);
        } else {
          var button = el("button", { type: "button", class: "sbw-file" }, "\ud83d\udcc4 " + name);
          button.addEventListener("click", function () {
            var ready = a.local ? Promise.resolve(a.local) : fetchMedia(a.media_id);
            ready.then(function (url) {
              var link = el("a", { href: url, download: name });
              document.body.appendChild(link);
              link.click();
              link.remove();
            }, function (e) { showError(e.message); });
          });
          box.appendChild(button);
        }
      } else if (/^https?:\/\//.test(a.source || "")) {
        box.appendChild(el("a", { href: a.source, target: "_blank", rel: "noopener noreferrer", class: "sbw-file" }, name));
      }
    });
    if (box.childNodes.length) node.insertBefore(box, node.firstChild);
  }
  function showTyping(on) { typing.classList.toggle("sbw-show", !!on); if (on) scroll(); }
  function setStatus(text) { status.textContent = text || ""; status.classList.toggle("sbw-show", !!text); }
  function setMode(mode) {
    if (mode === "expert") {
      setStatus("An expert will answer you here.");
      humanBtn.disabled = true;
    } else if (mode === "closed") {
      setStatus("This conversation is closed.");
      humanBtn.disabled = true;
    } else {
      setStatus("");
      humanBtn.disabled = !conversationId;
    }
  }
  function adopt(node, message) {
    node.dataset.id = message.id;
    setText(node, message.content);
    rendered[message.id] = node;
    offer(message);
  }
  // Answers the agent offered with its reply, as buttons under it; a tap sends the choice's title.
  // Only the newest reply's choices are shown.
  var choicesRow = null;
  function offer(message) {
    if (choicesRow) { choicesRow.remove(); choicesRow = null; }
    var choices = message && message.role === "ai" && message.metadata && message.metadata.choices;
    if (!choices || !choices.length) return;
    choicesRow = el("div", { class: "sbw-choices" });
    choices.forEach(function (choice) {
      var button = el("button", { type: "button", class: "sbw-choice" }, choice.title);
      button.addEventListener("click", function () { if (!sending) send(choice.title); });
      choicesRow.appendChild(button);
    });
    list.insertBefore(choicesRow, typing);
    scroll();
  }

  function render(message) {
    if (message.metadata && message.metadata.mode) setMode(message.metadata.mode);
    var existing = rendered[message.id];
    if (existing) { setText(existing, message.content); return; }
    if (message.role === "user") {
      for (var i = 0; i < pendingUser.length; i++) {
        if (pendingUser[i].content === message.content && pendingUser[i].files === (message.attachments || []).length) {
          adopt(pendingUser[i].el, message);
          if (pendingUser[i].own) ownReplyTo = message.id;
          pendingUser.splice(i, 1);
          return;
        }
      }
    }
    if (message.role === "ai" && message.reply_to) {
      if (message.reply_to === ownReplyTo) {
        ownReply = ownReply || bubble("ai", "");
        adopt(ownReply, message);
        return;
      }
      if (foreign[message.reply_to]) {
        adopt(foreign[message.reply_to], message);
        delete foreign[message.reply_to];
        showTyping(false);
        return;
      }
    }
    rendered[message.id] = bubble(message.role, message.content, message.attachments);
    rendered[message.id].dataset.id = message.id;
    if (message.role !== "user") showTyping(false);
    offer(message);
  }

  // ---- Transports ----------------------------------------------------------------------------
  // How a conversation's events reach the widget. A transport opens a stream of one
  // conversation's events, calls on(kind, payload) for each ("message", "update", "typing",
  // "delta", and "closed" when the stream ends for good), and returns {close}; or returns null
  // when it cannot run here. The first that runs is used: the WebSocket, then server-sent
  // events, which work everywhere.
  function sse(conversation, on) {
    if (!window.EventSource) return null;
    var source = new EventSource(base + "/v1/conversations/" + encodeURIComponent(conversation) + "/events?" + identityQuery());
    ["message", "update", "typing", "delta"].forEach(function (kind) {
      source.addEventListener(kind, function (e) {
        var payload = null;
        try { payload = e.data ? JSON.parse(e.data) : null; } catch (err) { /* a typing notice carries no JSON */ }
        on(kind, payload);
      });
    });
    // The browser reconnects by itself (sending Last-Event-ID) unless the stream was refused.
    source.onerror = function () { if (source.readyState === EventSource.CLOSED) on("closed", null); };
    return { close: function () { source.close(); } };
  }
  // One WebSocket (GET /v1/chat/ws) carries the conversation's events; it asks to "resume" from
  // the newest message it has, on opening and on every reconnect, so that nothing is missed.
  // A socket that cannot open at all (a proxy that does not pass WebSockets, an old gateway)
  // hands over to server-sent events.
  function websocket(conversation, on) {
    if (!window.WebSocket) return null;
    var url = base.replace(/^http/, "ws") + "/v1/chat/ws?" + identityQuery();
    var socket = null, opened = false, stopped = false, fallback = null, timer = null, retries = 0, lastSeq = 0;
    function connect() {
      socket = new WebSocket(url);
      socket.onopen = function () {
        opened = true;
        retries = 0;
        socket.send(JSON.stringify({ type: "resume", conversation_id: conversation, after_seq: lastSeq }));
      };
      socket.onmessage = function (e) {
        var frame;
        try { frame = JSON.parse(e.data); } catch (err) { return; }
        if (!frame || frame.conversation_id !== conversation) return;
        if (frame.type === "message" && frame.message) {
          if (frame.message.seq > lastSeq) lastSeq = frame.message.seq;
          on("message", frame.message);
        } else if (frame.type === "update" && frame.message) {
          on("update", frame.message);
        } else if (frame.type === "typing" || frame.type === "delta") {
          on(frame.type, frame);
        }
      };
      socket.onclose = function () {
        if (stopped) return;
        if (!opened) {
          fallback = sse(conversation, on);
          if (!fallback) on("closed", null);
          return;
        }
        opened = false;
        timer = setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, retries++)));
      };
    }
    connect();
    return {
      close: function () {
        stopped = true;
        clearTimeout(timer);
        if (socket) socket.close();
        if (fallback) fallback.close();
      }
    };
  }
  var transports = [websocket, sse];

  function onEvent(kind, payload) {
    if (kind === "closed") { events = null; return; }
    if (kind === "typing") { if (!sending) showTyping(true); return; }
    if (!payload) return;
    if (kind === "message" || kind === "update") { render(payload); return; }
    if (kind === "delta") {
      if (sending || payload.reply_to === ownReplyTo) return;
      var node = foreign[payload.reply_to] || (foreign[payload.reply_to] = bubble("ai", ""));
      showTyping(false);
      node.textContent += payload.content;
      scroll();
    }
  }

  function connectEvents() {
    if (events || !conversationId) return;
    var conversation = conversationId;
    // Events of a conversation the visitor has left behind are ignored.
    var on = function (kind, payload) { if (conversation === conversationId) onEvent(kind, payload); };
    for (var i = 0; i < transports.length && !events; i++) events = transports[i](conversation, on);
  }
  function disconnectEvents() {
    if (events) events.close();
    events = null;
  }

  function loadHistory() {
    if (loaded) return;
    loaded = true;
    if (!conversationId) { setMode("ai"); return; }
    var conversation = conversationId;
    fetch(base + "/v1/conversations/" + encodeURIComponent(conversation) + "/messages?limit=50", { headers: headers(false) })
      .then(function (response) {
        if (conversation !== conversationId) return null;
        if (response.status === 404) { conversationId = null; remember("conversation", null); setMode("ai"); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (page) {
        if (!page || conversation !== conversationId) return;
        page.messages.forEach(render);
        var last = page.messages[page.messages.length - 1];
        if (!last || !last.metadata || !last.metadata.mode) setMode(modeOf(page.messages));
        connectEvents();
      })
      .catch(function () { loaded = false; });
  }
  function modeOf(messages) {
    for (var i = messages.length - 1; i >= 0; i--) {
      if (messages[i].metadata && messages[i].metadata.mode) return messages[i].metadata.mode;
    }
    return "ai";
  }

  function showError(text) { bubble("error", text); }

  function readStream(response, onData) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true });
        var blocks = buffer.split(/\r?\n\r?\n/);
        buffer = blocks.pop();
        blocks.forEach(function (block) {
          var payload = block.split(/\r?\n/).filter(function (line) { return line.indexOf("data:") === 0; })
            .map(function (line) { return line.slice(5).replace(/^ /, ""); }).join("\n");
          if (payload) onData(JSON.parse(payload));
        });
        return pump();
      });
    }
    return pump();
  }

  // Sends the visitor's text, with the files they uploaded (each {upload, local}: the gateway's
  // answer to the upload, and the file shown from memory).
  function send(text, files) {
    files = files || [];
    sending = true;
    sendBtn.disabled = true;
    offer(null);
    ownReplyTo = null;
    ownReply = null;
    var shown = files.map(function (f) {
      return { media_id: f.upload.id, mime_type: f.upload.mime_type, filename: f.upload.name, local: f.local };
    });
    var mine = { el: bubble("user", text, shown), content: text, files: files.length, own: true };
    pendingUser.push(mine);
    showTyping(true);
    var message = { conversation_id: conversationId, content: text };
    if (files.length) message.attachments = files.map(function (f) { return { upload_id: f.upload.id }; });
    var body = JSON.stringify(message);
    var request = { method: "POST", headers: headers(true), body: body };
    request.headers["Idempotency-Key"] = randomId();
    return fetch(base + "/v1/chat/stream", request)
      .then(function (response) {
        if (!response.ok) {
          return response.json().then(function (err) {
            throw new Error((err && err.error && err.error.message) || "The message could not be sent.");
          });
        }
        return readStream(response, function (chunk) {
          if (!chunk.is_final) {
            showTyping(false);
            ownReply = ownReply || bubble("ai", "");
            ownReply.textContent += chunk.content;
            scroll();
            return;
          }
          if (conversationId !== chunk.conversation_id) {
            conversationId = chunk.conversation_id;
            remember("conversation", conversationId);
          }
          if (!rendered[chunk.message_id]) {
            mine.el.dataset.id = chunk.message_id;
            rendered[chunk.message_id] = mine.el;
            var at = pendingUser.indexOf(mine);
            if (at >= 0) pendingUser.splice(at, 1);
          }
          ownReplyTo = chunk.message_id;
          if (chunk.reply) {
            ownReply = ownReply || bubble("ai", "");
            adopt(ownReply, chunk.reply);
          } else if (ownReply && !ownReply.dataset.id) {
            ownReply.remove();
          }
          setMode(chunk.mode);
          connectEvents();
        });
      })
      .catch(function (e) {
        var at = pendingUser.indexOf(mine);
        if (at >= 0) pendingUser.splice(at, 1);
        mine.el.remove();
        showError(e.message || "The message could not be sent.");
      })
      .then(function () {
        sending = false;
        sendBtn.disabled = false;
        showTyping(false);
        input.focus();
      });
  }

  // ---- Uploads -------------------------------------------------------------------------------
  // The picked file goes up at once and is sent with whatever is typed. The browser's size and
  // type checks only spare a useless upload: the gateway decides.
  function upload(file) {
    if (uploadTypes.indexOf(file.type) < 0) return Promise.reject(new Error("Only pictures (PNG, JPEG, GIF, WebP) and PDF files can be sent."));
    if (file.size > maxUpload) return Promise.reject(new Error("The file is too large (at most " + Math.floor(maxUpload / 1048576 * 10) / 10 + " MB)."));
    var form = new FormData();
    form.append("file", file, file.name);
    return fetch(base + "/v1/uploads", { method: "POST", headers: headers(false), body: form })
      .then(function (response) {
        return response.json().then(function (result) {
          if (!response.ok) throw new Error((result && result.error && result.error.message) || "The file could not be sent.");
          return result;
        });
      });
  }
  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    if (!file || sending) return;
    attach.classList.add("sbw-busy");
    fileInput.disabled = true;
    upload(file)
      .then(function (uploaded) {
        var text = input.value.trim();
        input.value = "";
        var local = URL.createObjectURL(file);
        objectUrls.push(local);
        return send(text, [{ upload: uploaded, local: local }]);
      })
      .catch(function (e) { showError(e.message || "The file could not be sent."); })
      .then(function () { attach.classList.remove("sbw-busy"); fileInput.disabled = false; });
  });

  // ---- Conversations -------------------------------------------------------------------------
  function showConversations(on) {
    root.classList.toggle("sbw-listing", on);
    listBtn.setAttribute("aria-expanded", on ? "true" : "false");
    if (!on) { input.focus(); return; }
    newBtn.focus();
    conversationList.textContent = "";
    conversationList.appendChild(el("li", { class: "sbw-empty" }, "Loading\u2026"));
    fetch(base + "/v1/conversations?limit=50", { headers: headers(false) })
      .then(function (response) { return response.ok ? response.json() : { conversations: [] }; })
      .then(function (page) {
        conversationList.textContent = "";
        if (!page.conversations.length) {
          conversationList.appendChild(el("li", { class: "sbw-empty" }, "No earlier conversations."));
          return;
        }
        page.conversations.forEach(function (c) {
          var when = new Date(c.updated_at);
          var item = el("li");
          var button = el("button", { type: "button", class: "sbw-conversation", "data-id": c.id, "aria-current": c.id === conversationId ? "true" : "false" }, c.title || "Conversation");
          button.appendChild(el("small", {}, isNaN(when) ? "" : when.toLocaleString()));
          button.addEventListener("click", function () { switchTo(c.id); });
          item.appendChild(button);
          conversationList.appendChild(item);
        });
      })
      .catch(function () {
        conversationList.textContent = "";
        conversationList.appendChild(el("li", { class: "sbw-empty" }, "The conversations could not be loaded."));
      });
  }
  // Makes another conversation current (null: a new one, started by the next message).
  function switchTo(id) {
    if (sending) return;
    disconnectEvents();
    objectUrls.forEach(function (url) { URL.revokeObjectURL(url); });
    objectUrls = [];
    Array.prototype.slice.call(list.children).forEach(function (child) { if (child !== typing) child.remove(); });
    list.insertBefore(hint, typing);
    rendered = {};
    pendingUser = [];
    foreign = {};
    ownReplyTo = null;
    ownReply = null;
    choicesRow = null;
    showTyping(false);
    conversationId = id;
    remember("conversation", id);
    loaded = false;
    showConversations(false);
    loadHistory();
  }

  // ---- Wiring --------------------------------------------------------------------------------
  function open() { root.classList.add("sbw-open"); launcher.setAttribute("aria-label", "Close chat"); loadHistory(); input.focus(); }
  function close() { root.classList.remove("sbw-open"); launcher.setAttribute("aria-label", "Open chat"); }
  launcher.addEventListener("click", function () { root.classList.contains("sbw-open") ? close() : open(); });
  closeBtn.addEventListener("click", close);
  listBtn.addEventListener("click", function () { showConversations(!root.classList.contains("sbw-listing")); });
  newBtn.addEventListener("click", function () { switchTo(null); });
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && root.classList.contains("sbw-listing")) { e.preventDefault(); showConversations(false); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text || sending) return;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit ? form.requestSubmit() : sendBtn.click(); }
  });
  humanBtn.addEventListener("click", function () {
    if (!conversationId) return;
    humanBtn.disabled = true;
    fetch(base + "/v1/conversations/" + encodeURIComponent(conversationId) + "/handoff", { method: "POST", headers: headers(false) })
      .then(function (response) { return response.json(); })
      .then(function (result) {
        if (result.error) { showError(result.error.message); humanBtn.disabled = false; return; }
        if (result.message) render(result.message);
        setMode(result.conversation.mode);
      })
      .catch(function () { humanBtn.disabled = false; });
  });

  function mount() {
    document.head.appendChild(style);
    document.body.appendChild(root);
    humanBtn.disabled = !conversationId;
    if (data.open === "true") open();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

  window.SwitchboardWidget = { open: open, close: close, send: function (text) { open(); return send(text); } };
})();
