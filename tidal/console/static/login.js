"use strict";
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("error");
  error.textContent = "";
  const response = await fetch("/console/session", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: document.getElementById("token").value}),
  });
  if (response.ok) {
    location.assign("/console/");
  } else {
    const body = await response.json().catch(() => ({}));
    error.textContent = body.message || `log in failed (${response.status})`;
  }
});
