// Campaign forms (admin): a new campaign with its first banner (POST /v1/admin/campaigns), another creative for a
// campaign (POST /v1/admin/campaigns/{id}/creatives) and its offer-selection policy (PUT .../policy). Each shows
// what the server said when it refuses, and leaves the fields as they were so nothing typed is lost.
import { api, h, showError } from "../api.js";

// Where a campaign reaches people: display bids, or an activation channel (state/campaigns.py CampaignChannel).
const CHANNELS = ["display", "email", "sms", "push", "in_app", "web", "in_store", "paid_media"];
// The banner sizes the demo exchanges ask for most.
const SIZES = ["300x250", "728x90", "320x50", "300x600", "160x600", "1080x1920"];
const enc = encodeURIComponent;

/** A labelled control in a .form-grid; `hint` says what the value means. */
function field(id, label, control, hint = "") {
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("small", { class: "muted" }, hint) : null);
}
const sizeSelect = () => h("select", {}, ...SIZES.map((s) => h("option", { value: s }, s.replace("x", " × "))));
const banner = (id, size, markup) => {
  const [w, ht] = size.split("x").map(Number);
  return { id, format: "banner", w, h: ht, markup };
};
const epoch = (input) => (input.value ? new Date(input.value).getTime() / 1000 : undefined);
/** "ttd:ttd-winter-01, acme:42" -> [{platform, cid}, ...]; the server checks the DSPs are configured. */
function lineItems(text) {
  return text.split(",").map((part) => part.trim()).filter(Boolean).map((part) => {
    const at = part.indexOf(":");
    if (at <= 0 || at === part.length - 1) {
      throw new Error(`DSP line items are platform:cid pairs separated by commas (${part.slice(0, 40)} is not one)`);
    }
    return { platform: part.slice(0, at).trim(), cid: part.slice(at + 1).trim() };
  });
}

/** Runs `send` for a form: the button is off while it runs, errors go to `error`, success to `status`. */
function submitter(form, error, status, send) {
  return async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    status.textContent = "";
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      status.textContent = await send();
      status.className = "result ok";
    } catch (err) {
      showError(error, err);
    } finally {
      button.disabled = false;
    }
  };
}

/** "New campaign": it starts in draft, created by whoever is signed in; `onCreated(campaign)` follows. */
export function newCampaignForm(onCreated) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const status = h("p", { class: "result", role: "status", "aria-live": "polite" });
  const name = h("input", { required: true, maxlength: 200, autocomplete: "off", placeholder: "Winter sun" });
  const domain = h("input", { required: true, maxlength: 253, autocomplete: "off", placeholder: "contrail.example" });
  const cap = h("input", { type: "number", required: true, min: "0.01", step: "0.01", value: "2.00" });
  const budget = h("input", { type: "number", required: true, min: "0.01", step: "0.01", value: "100.00" });
  const starts = h("input", { type: "datetime-local" });
  const ends = h("input", { type: "datetime-local" });
  const dsps = h("input", { maxlength: 4000, autocomplete: "off", placeholder: "ttd:ttd-winter-01" });
  const size = sizeSelect();
  const markup = h("textarea", { rows: 3, maxlength: 100_000, placeholder: "<a href=\"https://contrail.example\">Fly</a>" });
  const boxes = CHANNELS.map((c) => h("input", { type: "checkbox", id: `new-ch-${c}`, value: c, checked: c === "display" }));
  const form = h("form", { class: "new-campaign-form", "aria-label": "New campaign" },
    h("div", { class: "form-grid" },
      field("new-name", "Name", name), field("new-domain", "Advertiser domain", domain),
      field("new-cap", "Bid cap (USD CPM)", cap), field("new-budget", "Daily budget (USD)", budget),
      field("new-starts", "Starts (optional)", starts, "empty: when it is scheduled"),
      field("new-ends", "Ends (optional)", ends, "empty: until it is paused or archived"),
      field("new-dsps", "DSP line items (optional)", dsps,
        "platform:cid, comma-separated: the DSPs' bids with that campaign id count in its report")),
    h("fieldset", { class: "channels" }, h("legend", {}, "Channels"),
      CHANNELS.map((c, i) => h("label", { for: `new-ch-${c}`, class: "check" }, boxes[i], c.replace("_", " ")))),
    h("div", { class: "form-grid" },
      field("new-size", "First banner's size", size), field("new-markup", "Its markup (HTML)", markup,
        "display campaigns need a creative before they are submitted")),
    error, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Create campaign")));
  form.addEventListener("submit", submitter(form, error, status, async () => {
    const body = {
      name: name.value.trim(), advertiser_domain: domain.value.trim(),
      bid_cap_micros: Math.round(Number(cap.value) * 1e6), daily_budget_micros: Math.round(Number(budget.value) * 1e6),
      channels: boxes.filter((b) => b.checked).map((b) => b.value),
      creatives: markup.value.trim() ? [banner("c1", size.value, markup.value.trim())] : [],
    };
    if (starts.value) body.starts_at = epoch(starts);
    if (ends.value) body.ends_at = epoch(ends);
    if (dsps.value.trim()) body.dsp_line_items = lineItems(dsps.value);
    const created = await api("POST", "/v1/admin/campaigns", body);
    onCreated(created);
    return `Created ${created.name} (${created.id}) in draft.`;
  }));
  return h("details", { class: "card wide new-campaign" }, h("summary", {}, h("h2", {}, "New campaign")), form);
}

/** The first free "cN" among the creatives a new one joins: the pending ones, when changes wait for approval. */
function nextCreativeId(campaign) {
  const current = campaign.pending && campaign.pending.creatives ? campaign.pending.creatives : campaign.creatives;
  const taken = new Set(current.map((c) => c.id));
  let n = current.length + 1;
  while (taken.has(`c${n}`)) n += 1;
  return `c${n}`;
}

/** "Add a creative" to a campaign that can still be edited; `onAdded(campaign)` follows. */
export function creativeForm(campaign, onAdded) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const status = h("p", { class: "result", role: "status", "aria-live": "polite" });
  const id = h("input", { required: true, maxlength: 64, autocomplete: "off", value: nextCreativeId(campaign) });
  const size = sizeSelect();
  const markup = h("textarea", { rows: 3, required: true, maxlength: 100_000 });
  const running = !["draft", "rejected"].includes(campaign.state);
  const form = h("form", { class: "creative-form", "aria-label": "Add a creative" },
    h("div", { class: "form-grid" }, field("creative-id", "Creative id", id), field("creative-size", "Size", size),
      field("creative-markup", "Markup (HTML)", markup)),
    running ? h("p", { class: "muted small" }, "The campaign has been approved: a new creative waits for approval " +
      "while the approved ones keep running.") : null,
    error, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Add creative")));
  form.addEventListener("submit", submitter(form, error, status, async () => {
    const added = id.value.trim();
    const updated = await api("POST", `/v1/admin/campaigns/${enc(campaign.id)}/creatives`,
      banner(added, size.value, markup.value.trim()));
    onAdded(updated);
    id.value = nextCreativeId(updated);
    markup.value = "";
    return updated.pending ? `Creative ${added} is waiting for approval.` : `Added creative ${added}.`;
  }));
  return h("details", { class: "add-creative" }, h("summary", {}, "Add a creative"), form);
}

/** "Configure the policy": kind, arms and context buckets; learned arms are kept when kind and arms stay. */
export function policyForm(campaign, onSaved) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const status = h("p", { class: "result", role: "status", "aria-live": "polite" });
  const kind = h("select", {}, h("option", { value: "thompson" }, "Thompson sampling"),
    h("option", { value: "epsilon_greedy" }, "ε-greedy"), h("option", { value: "uniform" }, "uniform"));
  const arms = h("select", {}, h("option", { value: "creatives" }, "its creatives"),
    h("option", { value: "offers" }, "its offers"));
  const epsilon = h("input", { type: "number", min: "0", max: "1", step: "0.01", value: "0.1" });
  const epsilonField = field("policy-epsilon", "ε (exploration share)", epsilon);
  const contexts = ["tier", "device"].map((c) => h("input", { type: "checkbox", id: `policy-ctx-${c}`, value: c }));
  const showEpsilon = () => { epsilonField.hidden = kind.value !== "epsilon_greedy"; };
  kind.addEventListener("change", showEpsilon);
  showEpsilon();
  const form = h("form", { class: "policy-form", "aria-label": "Configure the policy" },
    h("div", { class: "form-grid" }, field("policy-kind", "Policy", kind), field("policy-arms", "Choosing among", arms),
      epsilonField),
    h("fieldset", { class: "channels" }, h("legend", {}, "Learn separately per (none: one for everyone)"),
      contexts.map((b) => h("label", { for: b.id, class: "check" }, b, b.value))),
    error, status, h("div", { class: "actions" }, h("button", { type: "submit" }, "Save policy")));
  form.addEventListener("submit", submitter(form, error, status, async () => {
    const body = { kind: kind.value, arms: arms.value, context: contexts.filter((b) => b.checked).map((b) => b.value) };
    if (kind.value === "epsilon_greedy") body.epsilon = Number(epsilon.value);
    await api("PUT", `/v1/admin/campaigns/${enc(campaign.id)}/policy`, body);
    onSaved();
    return `Saved the ${kind.options[kind.selectedIndex].text} policy over ${arms.value}.`;
  }));
  return h("details", { class: "configure-policy" }, h("summary", {}, "Configure the policy"), form);
}
