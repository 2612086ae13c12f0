// SMTP Service Manager (HTML): the little the pages need beyond HTML — confirmations, live counters and events.
"use strict";
(function () {
  const token = document.querySelector('meta[name="csrf-token"]')?.content || "";

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });

  async function op(name, args) {
    const response = await fetch("/api/v1/" + name, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify(args || {}),
    });
    const reply = await response.json();
    if (!reply.ok) throw new Error(reply.error.message);
    return reply.result;
  }

  const counters = document.querySelector("[data-live-counters]");
  if (counters) {
    const live = document.getElementById("live");
    setInterval(async () => {
      try {
        const values = await op("counters");
        for (const cell of counters.querySelectorAll("[data-counter]")) {
          const value = values[cell.dataset.counter];
          if (value !== undefined) cell.textContent = String(value);
        }
        live.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      } catch (error) {
        live.textContent = "Not updated: " + error.message;
      }
    }, 5000);
  }

  const events = document.querySelector("[data-live-events] tbody");
  if (events && window.EventSource) {
    const source = new EventSource("/api/v1/events");
    source.onmessage = null;
    const show = (message) => {
      const data = JSON.parse(message.data);
      const row = document.createElement("tr");
      const details = Object.entries(data).filter(([k]) => k !== "type" && k !== "at")
        .map(([k, v]) => k + "=" + (Array.isArray(v) ? v.join(",") : v)).join("  ");
      for (const text of [new Date(data.at * 1000).toLocaleTimeString(), data.type, details]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      events.prepend(row);
      while (events.rows.length > 200) events.deleteRow(-1);
    };
    for (const type of ["StateChanged", "SessionOpened", "SessionClosed", "MessageQueued", "MessageDropped",
                        "MessageRemoved", "QueueChanged", "MessageBadmailed", "ConnectionRefused", "ConfigChanged",
                        "AdminAction", "ErrorEvent", "ListenerFailed", "AuthFailed", "SecurityWarning"]) {
      source.addEventListener(type, show);
    }
  }
})();
