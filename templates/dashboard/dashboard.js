// Switchboard dashboard. The server renders every piece of HTML (pages, and fragments under
// /dashboard/fragments/); this script only
//   - listens to event streams and re-fetches the fragments they make stale,
//   - calls the staff JSON API for actions, echoing the session's CSRF token in X-CSRF-Token,
//   - swaps fragments in without losing focus, a reply being typed, or the reader's place.
// No framework, no build step, nothing loaded from elsewhere.
(() => {
  "use strict";

  const main = document.getElementById("main");
  if (!main) return;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const flash = document.getElementById("flash");
  const liveStatus = document.getElementById("live-status");
  const LOGIN = "/dashboard/login";

  /** A failed request, with its HTTP status. */
  class Failure extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  /** Tells the user (and screen readers, through the live region) how an action went. */
  function say(text, isError = false) {
    if (!flash) return;
    flash.textContent = text;
    flash.classList.toggle("error", isError);
  }

  /** The session is gone: sign in again. */
  function signedOut() {
    window.location.assign(LOGIN);
    return new Failure("Your session has ended.", 401);
  }

  /** Calls the staff JSON API; resolves to the answer's JSON. */
  async function api(method, url, body) {
    const init = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 401) throw signedOut();
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      throw new Failure(data?.error?.message || `The request failed (${response.status}).`, response.status);
    }
    return data;
  }

  /** Fetches a server-rendered fragment; resolves to its HTML and its parsed content. */
  async function fragment(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.status === 401) throw signedOut();
    const html = await response.text();
    const template = document.createElement("template");
    template.innerHTML = html;
    if (!response.ok) {
      const message = template.content.querySelector("#error-message")?.textContent.trim();
      throw new Failure(message || `Loading failed (${response.status}).`, response.status);
    }
    return { html, content: template.content };
  }

  /** Shows `<time>` elements in the reader's time zone (the server writes UTC). */
  function localTimes(root) {
    for (const time of root.querySelectorAll("time[datetime]")) {
      const date = new Date(time.dateTime);
      if (Number.isNaN(date.getTime())) continue;
      time.title = time.dateTime;
      time.textContent = date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    }
  }

  /** The HTML each container shows, as the server sent it. */
  const shown = new WeakMap();

  /** Replaces a container's content, unless the server sent the same again; keeps the focus on
   * the same control if it is still there. Returns whether anything changed. */
  function swap(target, { html, content }) {
    if (shown.get(target) === html) return false;
    shown.set(target, html);
    const focused = target.contains(document.activeElement) ? document.activeElement.id : "";
    target.replaceChildren(content);
    localTimes(target);
    if (focused) document.getElementById(focused)?.focus();
    return true;
  }

  /** Loads a fragment into a container, which remembers it as what to refresh. */
  async function load(url, targetId) {
    const target = document.getElementById(targetId);
    if (!target) return;
    target.setAttribute("aria-busy", "true");
    try {
      const loaded = await fragment(url);
      target.dataset.src = url;
      swap(target, loaded);
    } finally {
      target.removeAttribute("aria-busy");
    }
  }

  /** Returns a function that runs `task` soon: calls close together run it once, and a call
   * while it runs runs it once more afterwards. */
  function coalesce(task, delay = 100) {
    let timer = null;
    let running = false;
    let again = false;
    const trigger = () => {
      if (!timer) timer = setTimeout(run, delay);
    };
    const run = async () => {
      timer = null;
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        await task();
      } catch (e) {
        if (e.status !== 401) say(e.message, true);
      } finally {
        running = false;
        if (again) {
          again = false;
          trigger();
        }
      }
    };
    return trigger;
  }

  // ---- Event streams ----------------------------------------------------------------------------
  const streams = new Map();
  function showLive() {
    if (!liveStatus) return;
    const on = streams.size > 0 && [...streams.values()].every(Boolean);
    liveStatus.textContent = on ? "Live" : "Reconnecting…";
    liveStatus.classList.toggle("on", on);
  }

  /** Opens an event stream (cookies go along: same origin). `handlers`: event name → function.
   * A stream the server refuses (session ended, access lost) makes `refresh()` find out why,
   * and is opened again later while `wanted()`. */
  function listen(name, url, handlers, refresh, wanted = () => true) {
    const source = new EventSource(url);
    streams.set(name, false);
    source.onopen = () => {
      streams.set(name, true);
      document.body.dataset[name] = "live";
      showLive();
    };
    for (const [event, handler] of Object.entries(handlers)) source.addEventListener(event, handler);
    source.onerror = () => {
      streams.set(name, false);
      delete document.body.dataset[name];
      showLive();
      if (source.readyState === EventSource.CLOSED) {
        refresh();
        setTimeout(() => {
          if (wanted()) listen(name, url, handlers, refresh, wanted);
        }, 10000);
      }
    };
    return source;
  }

  // ---- Actions ----------------------------------------------------------------------------------
  const conversationUrl = (id) => `/v1/expert/conversations/${encodeURIComponent(id)}`;
  let refreshPage = () => {};

  const actions = {
    async claim(button) {
      await api("POST", `${conversationUrl(button.dataset.id)}/claim`);
      say("The conversation is yours.");
    },
    async release(button) {
      if (!window.confirm("Give this conversation back to the assistant?")) return;
      await api("POST", `${conversationUrl(button.dataset.id)}/release`);
      say("The assistant answers this conversation again.");
    },
    async close(button) {
      if (!window.confirm("Close this conversation? The end user is told.")) return;
      await api("POST", `${conversationUrl(button.dataset.id)}/close`);
      say("The conversation is closed.");
    },
    async transfer(button) {
      const select = document.getElementById("transfer-to");
      if (!select?.value) {
        say("Choose who to transfer the conversation to.", true);
        select?.focus();
        return;
      }
      const name = select.selectedOptions[0]?.textContent || "";
      await api("POST", `${conversationUrl(button.dataset.id)}/transfer`, { to: select.value });
      say(`Transferred to ${name}.`);
    },
    async availability(button) {
      const available = button.getAttribute("aria-pressed") !== "true";
      const result = await api("PUT", "/v1/expert/me/availability", { available });
      showAvailability(result.user);
      say(result.user.available ? "You are available." : "You are away.");
    },
  };

  /** Shows the availability and capacity the server confirmed. */
  function showAvailability(user) {
    document.getElementById("availability-toggle")?.setAttribute("aria-pressed", String(user.available));
    const state = document.getElementById("availability-state");
    if (state) state.textContent = user.available ? "You are available." : "You are away.";
    const capacity = document.getElementById("capacity");
    if (capacity) capacity.value = user.capacity;
  }

  document.addEventListener("click", async (event) => {
    const loader = event.target.closest("button[data-load]");
    if (loader) {
      try {
        await load(loader.dataset.load, loader.dataset.target);
      } catch (e) {
        if (e.status !== 401) say(e.message, true);
      }
      return;
    }
    const button = event.target.closest("button[data-action]");
    const action = button && actions[button.dataset.action];
    if (!action || button.disabled) return;
    button.disabled = true;
    try {
      await action(button);
      refreshPage();
    } catch (e) {
      if (e.status !== 401) say(e.message, true);
      refreshPage();
    } finally {
      button.disabled = false;
    }
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.id === "reply-form") {
      event.preventDefault();
      await reply(form);
    } else if (form.id === "capacity-form") {
      event.preventDefault();
      const toggle = document.getElementById("availability-toggle");
      const capacity = Number(form.elements.capacity.value);
      try {
        const result = await api("PUT", "/v1/expert/me/availability", {
          available: toggle?.getAttribute("aria-pressed") === "true",
          capacity,
        });
        showAvailability(result.user);
        say(`Your capacity is ${result.user.capacity}.`);
        refreshPage();
      } catch (e) {
        if (e.status !== 401) say(e.message, true);
      }
    } else if (form.dataset.target) {
      // A search: its results are a fragment.
      event.preventDefault();
      const query = new URLSearchParams(new FormData(form)).toString();
      try {
        await load(`${form.getAttribute("action")}?${query}`, form.dataset.target);
      } catch (e) {
        if (e.status !== 401) say(e.message, true);
      }
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.target.id === "reply-input" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      event.target.form?.requestSubmit();
    }
  });

  /** Sends the reply being typed; keeps it when sending fails. */
  async function reply(form) {
    const input = form.elements.content;
    const send = document.getElementById("reply-send");
    const content = input.value.trim();
    if (!content) {
      say("Write something first.", true);
      input.focus();
      return;
    }
    if (send) send.disabled = true;
    try {
      await api("POST", `${conversationUrl(form.dataset.id)}/messages`, { content });
      input.value = "";
      say("Sent.");
      refreshPage();
    } catch (e) {
      if (e.status !== 401) say(e.message, true);
    } finally {
      if (send) send.disabled = false;
      input.focus();
    }
  }

  // ---- The index page ---------------------------------------------------------------------------
  function indexPage() {
    const lists = document.getElementById("lists");
    const status = document.getElementById("lists-status");
    const refresh = coalesce(async () => {
      const loaded = await fragment(lists.dataset.src);
      const root = loaded.content.firstElementChild;
      // Availability can change without the user (an unanswered assignment sets them away).
      const toggle = document.getElementById("availability-toggle");
      if (root?.dataset.available && toggle && toggle.getAttribute("aria-pressed") !== root.dataset.available) {
        showAvailability({
          available: root.dataset.available === "true",
          capacity: document.getElementById("capacity")?.value,
        });
        say(root.dataset.available === "true" ? "You are available." : "You are away now: new conversations go to others.");
      }
      const summary = root?.dataset.summary || "";
      if (swap(lists, loaded) && status && summary && status.textContent !== summary) {
        status.textContent = summary;
      }
    });
    refreshPage = refresh;
    listen("notices", "/v1/expert/events", { hello: refresh, notice: refresh, reload: refresh }, refresh);
  }

  // ---- A conversation page ----------------------------------------------------------------------
  function conversationPage() {
    const id = main.dataset.conversation;
    let gone = false;
    let typingTimer = null;

    const showTyping = (on) => {
      const typing = document.getElementById("typing");
      if (!typing) return;
      typing.textContent = on ? "The assistant is writing…" : "";
      clearTimeout(typingTimer);
      if (on) typingTimer = setTimeout(() => showTyping(false), 15000);
    };

    /** Brings the page up to date with a fresh transcript fragment: new messages are appended
     * (and announced by the log region), changed ones replaced, the controls replaced only when
     * they changed (keeping a reply being typed). */
    const merge = (content) => {
      const state = document.getElementById("conversation-state");
      const freshState = content.querySelector("#conversation-state");
      if (state && freshState && state.innerHTML !== freshState.innerHTML) state.replaceWith(freshState);

      const list = document.getElementById("messages");
      const fresh = content.querySelector("#messages");
      if (list && fresh) {
        const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        const shown = new Map([...list.children].map((li) => [li.dataset.id, li]));
        const keep = new Set();
        let added = false;
        for (const li of [...fresh.children]) {
          keep.add(li.dataset.id);
          const old = shown.get(li.dataset.id);
          if (!old) {
            list.append(li);
            added = true;
          } else if (old.dataset.rev !== li.dataset.rev) {
            old.replaceWith(li);
          } else {
            continue;
          }
          localTimes(li);
        }
        for (const [key, li] of shown) if (!keep.has(key)) li.remove();
        if (added) {
          showTyping(false);
          if (atBottom) list.scrollTop = list.scrollHeight;
        }
      }

      const controls = document.getElementById("controls");
      const freshControls = content.querySelector("#controls");
      if (controls && freshControls && controls.dataset.state !== freshControls.dataset.state) {
        const draft = document.getElementById("reply-input")?.value || "";
        const hadFocus = controls.contains(document.activeElement) ? document.activeElement.id : "";
        controls.replaceWith(freshControls);
        const input = document.getElementById("reply-input");
        if (input && draft) input.value = draft;
        if (hadFocus) document.getElementById(hadFocus)?.focus();
      }
    };

    const refresh = coalesce(async () => {
      if (gone) return;
      try {
        merge((await fragment(main.dataset.fragment)).content);
      } catch (e) {
        if (e.status !== 404) throw e;
        // Transferred, released or closed by someone else: it is not ours to see any more.
        gone = true;
        document.getElementById("controls")?.replaceChildren();
        say("You no longer have access to this conversation.", true);
      }
    });
    refreshPage = refresh;

    const list = document.getElementById("messages");
    if (list) list.scrollTop = list.scrollHeight;
    listen(
      "conversation",
      main.dataset.stream,
      { message: refresh, update: refresh, observer: refresh, typing: () => showTyping(true) },
      refresh,
      () => !gone,
    );
    listen(
      "notices",
      "/v1/expert/events",
      {
        notice: (event) => {
          try {
            if (JSON.parse(event.data).conversation_id === id) refresh();
          } catch (_) {
            refresh();
          }
        },
        reload: refresh,
      },
      refresh,
    );
  }

  localTimes(document);
  if (main.dataset.page === "index") indexPage();
  else if (main.dataset.page === "conversation") conversationPage();
})();
