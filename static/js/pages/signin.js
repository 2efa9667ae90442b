// Sign in (customers, staff) or create a customer account; a guest can shop without either.
import { api, h, saveSession, showError } from "../api.js";

export function render(root, { navigate }) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const email = h("input", { id: "signin-email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "signin-password", name: "password", type: "password",
                                autocomplete: "current-password", required: true, minlength: 8 });
  const start = async (ev, path) => {
    ev.preventDefault();
    error.hidden = true;
    try {
      if (path === "/v1/accounts") await api("POST", path, { email: email.value, password: password.value });
      const token = await api("POST", "/v1/auth/token", { email: email.value, password: password.value });
      saveSession({ token: token.access_token, role: token.role, subject: token.subject, email: email.value,
                    expires_at: Date.now() / 1000 + token.expires_in });
      navigate(token.role === "admin" ? "bidding" : token.role === "customer" ? "account" : "shop");
    } catch (err) { showError(error, err); }
  };
  const form = h("form", { class: "card narrow", onsubmit: (ev) => start(ev, "/v1/auth/token") },
    h("h1", {}, "Sign in"),
    h("label", { for: "signin-email" }, "Email"), email,
    h("label", { for: "signin-password" }, "Password"), password,
    error,
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Sign in"),
      h("button", { type: "button", class: "secondary", onclick: (ev) => start(ev, "/v1/accounts") }, "Create account")),
    h("p", { class: "muted" }, "Demo accounts (loaded by make run): admin@contrail.demo / contrail-admin, ",
      "traveller@contrail.demo / contrail-demo. Or ", h("a", { href: "#/shop" }, "shop as a guest"), "."));
  root.append(form);
  email.focus();
}
