// Recommendations (admin): pick a user, see what they interacted with and each strategy's list with its reasons and
// the model that scored it, popular items, an item's neighbours, and retraining with its evaluation.
import { api, h, showError, useStyle, when } from "../api.js";

const STRATEGIES = [
  ["personalized", "Personalized", "A blend of co-view, embedding similarity, popularity and recency."],
  ["cf", "Co-viewed (cf)", "Co-viewed with the user's recent items."],
  ["content_based", "Content based", "The user's recent items' categories, tags and features."],
  ["frequently_bought_together", "Frequently bought together", "Bought together with what the user bought."],
  ["trending", "Trending", "Most events in the trending window."],
  ["new_arrivals", "New arrivals", "Items first seen most recently."],
];
const CATEGORIES = ["destination", "ancillary", "offer"];
const score = (x) => new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 }).format(x);
const pct = (x) => new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 }).format(x || 0);
const alertBox = () => h("p", { class: "error", role: "alert", hidden: true });
const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null)).toString();
const modelText = (m) => ({ seed: "seed weights, no trained model", popular: "popular: no history",
                            features: "live features" })[m]
  || (m.endsWith(":learned") ? "trained model, learned weights" : m.endsWith(":seed") ? "trained model, seed weights"
    : "trained model");

export function render(root, { params }) {
  useStyle("reco");
  root.classList.add("reco-view");
  let user = (params.get("user") || "").trim();
  let gone = false;
  let picked = null; // the item whose neighbours are shown

  // ---- the picker ----
  const error = alertBox();
  const userInput = h("input", { id: "reco-user", name: "user_id", autocomplete: "off", spellcheck: "false",
                                 list: "reco-members", placeholder: "usr_… or any id", value: user, required: true });
  const members = h("datalist", { id: "reco-members" });
  const quick = h("div", { class: "reco-quick", "aria-label": "Users to pick", role: "group" });
  const category = h("input", { id: "reco-category", name: "category", autocomplete: "off", list: "reco-categories",
                                placeholder: "any" });
  const excludeSeen = h("input", { id: "reco-exclude", type: "checkbox", name: "exclude_seen" });
  const count = h("select", { id: "reco-n", name: "n" }, [5, 10, 20].map((n) =>
    h("option", { value: n, selected: n === 10 }, n)));
  const status = h("p", { role: "status", "aria-live": "polite", class: "muted" });
  const form = h("form", { class: "reco-form", onsubmit: (ev) => { ev.preventDefault(); pick(userInput.value); } },
    h("div", { class: "field user" }, h("label", { for: "reco-user" }, "User id"), userInput, members),
    h("div", { class: "field" }, h("label", { for: "reco-category" }, "Category"), category,
      h("datalist", { id: "reco-categories" }, CATEGORIES.map((c) => h("option", { value: c })))),
    h("div", { class: "field" }, h("label", { for: "reco-n" }, "Items per list"), count),
    h("div", { class: "field check" }, excludeSeen,
      h("label", { for: "reco-exclude" }, "Leave out what they have seen (exclude=seen)")),
    h("button", { type: "submit" }, "Show recommendations"));
  for (const el of [category, count, excludeSeen]) el.addEventListener("change", () => { if (user) loadUser(); });

  // ---- the user's items (inferred), the lists, neighbours, popular, retraining ----
  const seenCard = h("section", { class: "card wide", "aria-labelledby": "reco-seen-h", hidden: !user });
  const lists = h("div", { class: "reco-lists wide", hidden: !user });
  const cards = Object.fromEntries(STRATEGIES.map(([id, label, about]) => {
    const body = h("div", {});
    const model = h("p", { class: "muted small reco-model" });
    const el = h("section", { class: "card reco-list", "aria-labelledby": `reco-h-${id}`, "data-strategy": id },
      h("h2", { id: `reco-h-${id}` }, label), h("p", { class: "muted small" }, about), model, body);
    lists.append(el);
    return [id, { el, body, model }];
  }));
  const neighbours = h("section", { class: "card", "aria-labelledby": "reco-nb-h", id: "reco-neighbours" },
    h("h2", { id: "reco-nb-h", tabindex: "-1" }, "Item neighbours"),
    h("p", { class: "muted" }, "Choose an item in any list to see its nearest neighbours."));
  const popularBody = h("div", {});
  const popularError = alertBox();
  const popular = h("section", { class: "card", "aria-labelledby": "reco-pop-h" },
    h("div", { class: "row spread" }, h("h2", { id: "reco-pop-h" }, "Popular now"),
      h("button", { type: "button", class: "secondary small", onclick: () => loadPopular() }, "Refresh")),
    h("p", { class: "muted small" }, "Popularity decayed on event time, for everyone (the category filter applies)."),
    popularError, popularBody);
  const trainResult = h("div", { "aria-live": "polite" });
  const trainError = alertBox();
  const trainButton = h("button", { type: "button", onclick: () => retrain() }, "Retrain now");
  const training = h("section", { class: "card", "aria-labelledby": "reco-train-h" },
    h("h2", { id: "reco-train-h" }, "Model"),
    h("p", { class: "muted small" }, "Retraining learns item embeddings and the blend's weights from the stored ",
      "interactions, evaluates them against the serving model on held-out events (leave-last-out, HR@10 and ",
      "NDCG@10), and swaps them in when they are not worse."),
    h("div", { class: "actions" }, trainButton), trainError, trainResult);

  root.append(h("section", { class: "card wide reco-head", "aria-labelledby": "reco-h1" },
    h("h1", { id: "reco-h1" }, "Recommendations"),
    h("p", { class: "muted" }, "Type a user id (or pick a loyalty member) to see every strategy's list for them, ",
      "with each item's score and reason. Choose an item to see its neighbours."),
    form, quick, error, status), seenCard, lists, neighbours, popular, training);

  // An item as a button that shows its neighbours.
  const itemButton = (id) => h("button", { type: "button", class: "reco-item", "data-item": id,
    "aria-pressed": String(id === picked), onclick: () => showNeighbours(id) }, id);
  const itemList = (items, empty) => items.length
    ? h("ol", { class: "reco-items" }, items.map((it) => h("li", {},
      h("div", { class: "reco-line" }, itemButton(it.item_id), h("span", { class: "num score", title: "score" }, score(it.score))),
      h("span", { class: "reason" }, it.reason))))
    : h("p", { class: "muted" }, empty);

  function filters(extra = {}) {
    return { n: count.value, category: category.value.trim(), ...extra };
  }

  function pick(value) {
    const id = value.trim();
    if (!id) { showError(error, "Type a user id first."); userInput.focus(); return; }
    user = id;
    userInput.value = id;
    history.replaceState(null, "", `#/reco?user=${encodeURIComponent(id)}`);
    loadUser();
  }

  async function loadMembers() {
    try {
      const found = await api("GET", "/v1/admin/loyalty/members?limit=20");
      if (gone) return;
      const ids = found.items.map((m) => m.user_id);
      members.replaceChildren(...ids.map((id) => h("option", { value: id })));
      quick.replaceChildren(...(ids.length ? [h("span", { class: "muted small" }, "Loyalty members:"),
        ...ids.slice(0, 5).map((id) => h("button", { type: "button", class: "secondary small", onclick: () => pick(id) }, id))]
        : [h("span", { class: "muted small" }, "No loyalty members yet; type any user id.")]));
    } catch (err) {
      quick.replaceChildren(h("span", { class: "muted small" }, `Members could not be listed (${err.message}); type any user id.`));
    }
  }

  async function loadUser() {
    error.hidden = true;
    const who = user;
    seenCard.hidden = false;
    lists.hidden = false;
    status.textContent = `Loading the lists for ${who}…`;
    const exclude = excludeSeen.checked ? "seen" : "";
    const path = (strategy, extra = {}) =>
      `/v1/recommendations/${encodeURIComponent(who)}?${q({ ...filters({ exclude }), strategy, ...extra })}`;
    const answers = await Promise.all(STRATEGIES.map(([id]) => api("GET", path(id)).catch((err) => ({ err }))));
    if (gone || who !== user) return;
    let model = "";
    const fellBack = [];   // the lists that fell back to popular items (the user has no history they can use)
    const ownLists = [];   // the lists that need no history (trending, new arrivals: model "features")
    STRATEGIES.forEach(([id, label], i) => {
      const a = answers[i], card = cards[id];
      if (a.err) {
        card.model.textContent = "";
        card.body.replaceChildren(h("p", { class: "error" }, a.err.message));
        return;
      }
      if (id === "personalized") model = a.model;
      (a.model === "popular" ? fellBack : ownLists).push(label);
      card.model.replaceChildren("Model: ", h("strong", { class: "mono" }, a.model), ` (${modelText(a.model)})`);
      card.body.replaceChildren(itemList(a.items, category.value.trim()
        ? "Nothing to recommend in that category." : "Nothing to recommend."));
    });
    const failed = answers.filter((a) => a.err);
    if (failed.length === answers.length) { showError(error, failed[0].err); status.textContent = ""; }
    else status.textContent = `Lists for ${who}${model === "popular" ? ": no history yet, so popular items stand in "
      + "for the personalized lists" : model ? `, personalized by ${model}` : ""}` +
      `${excludeSeen.checked ? ", leaving out what they have seen" : ""}.`;
    await loadSeen(who, model, fellBack, ownLists);
  }

  // "A, B and C"
  const names = (xs) => (xs.length < 2 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`);

  // What the lists of a user without history show: which fell back to popular items, which are their own.
  function noHistoryText(who, fellBack, ownLists) {
    const own = ownLists.length ? ` ${names(ownLists)} ${ownLists.length === 1 ? "is its own list" : "are their own "
      + "lists"}, which need no history.` : "";
    return fellBack.length ? `${who} has no history yet: ${names(fellBack)} fall${fellBack.length === 1 ? "s" : ""} `
      + `back to popular items.${own}` : `${who} has no history yet.${own}`;
  }

  async function loadSeen(who, model, fellBack = [], ownLists = []) {
    const heading = h("h2", { id: "reco-seen-h" }, `What ${who} interacted with`);
    try {
      const a = await api("GET", `/v1/reco/users/${encodeURIComponent(who)}?limit=50`);
      if (gone || who !== user) return;
      const counting = a.events.filter((e) => e.counts).length;
      seenCard.replaceChildren(...[heading,
        !a.known || model === "popular"
          ? h("p", { class: "muted" }, noHistoryText(who, fellBack, ownLists)) : null,
        a.events.length ? h("p", { class: "muted small" }, `Their latest ${a.events.length} events, newest first; `,
          `${counting} of them count in their lists now (the latest reco.recent_n, within reco.recent_ttl_s).`) : null,
        a.events.length ? h("table", { class: "reco-events" },
          h("thead", {}, h("tr", {}, ["Item", "Event", "When", "Weight", "Counts now"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, a.events.map((e) => h("tr", { class: e.counts ? "" : "muted" },
            h("td", {}, itemButton(e.item_id)), h("td", {}, e.kind.replace("_", " ")), h("td", {}, when(e.at)),
            h("td", { class: "num" }, String(e.weight)), h("td", {}, e.counts ? "yes" : "no"))))) : null,
        h("h3", {}, "Bought or dismissed (never recommended to them)"),
        a.bought_or_dismissed.length
          ? h("ul", { class: "reco-chips" }, a.bought_or_dismissed.map((id) => h("li", {}, itemButton(id))))
          : h("p", { class: "muted" }, "None.")].filter(Boolean));
    } catch (err) {
      if (gone || who !== user) return;
      seenCard.replaceChildren(heading, h("p", { class: "error" }, err.message));
    }
  }

  async function showNeighbours(id) {
    picked = id;
    for (const b of root.querySelectorAll("button.reco-item")) b.setAttribute("aria-pressed", String(b.dataset.item === id));
    const heading = h("h2", { id: "reco-nb-h", tabindex: "-1" }, `Neighbours of ${id}`);
    neighbours.replaceChildren(heading, h("p", { class: "muted" }, "Loading…"));
    heading.focus({ preventScroll: true });
    neighbours.scrollIntoView({ block: "nearest" });
    try {
      const a = await api("GET", `/v1/items/${encodeURIComponent(id)}/similar?n=${count.value}`);
      if (gone || picked !== id) return;
      neighbours.replaceChildren(heading,
        h("p", { class: "muted small" }, a.source === "embeddings"
          ? ["By the trained embeddings (model ", h("span", { class: "mono" }, a.model), ")."]
          : ["By co-view counts: no model has been trained yet (", h("span", { class: "mono" }, a.model), ")."]),
        itemList(a.items, "No neighbours yet: nothing has been viewed with it."));
    } catch (err) {
      if (gone || picked !== id) return;
      neighbours.replaceChildren(heading, h("p", { class: "error", role: "alert" }, err.message));
    }
  }

  async function loadPopular() {
    try {
      const a = await api("GET", `/v1/recommendations/popular?${q(filters())}`);
      if (gone) return;
      popularError.hidden = true;
      popularBody.replaceChildren(itemList(a.items, "No popular items in that category."));
    } catch (err) { showError(popularError, err); }
  }
  category.addEventListener("change", () => loadPopular());
  count.addEventListener("change", () => loadPopular());

  async function retrain() {
    trainButton.disabled = true;
    trainError.hidden = true;
    trainResult.replaceChildren(h("p", { class: "muted" }, "Training…"));
    try {
      const t = await api("POST", "/v1/admin/reco/train");
      if (gone) return;
      const e = t.evaluation;
      trainResult.replaceChildren(
        h("p", { class: `reco-outcome ${t.live ? "ok" : "warn"}` }, h("strong", {}, t.live ? "Live" : "Not live"), `: ${t.reason}`),
        h("dl", { class: "reco-facts" },
          [["Model serving", t.model], ["Version", t.version || "none"], ["Weights", `${t.weights_kind}: ${t.weights.map(score).join(", ")}`],
           ["Held-out", `${e.users} users, ${e.events} events`], ["Took", `${score(t.seconds)} s`]]
            .map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
        h("div", { class: "table-wrap" }, h("table", {},
          h("caption", { class: "sr-only" }, "Evaluation on held-out events"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Evaluation"), h("th", { scope: "col", class: "num" }, "Candidate"),
            h("th", { scope: "col", class: "num" }, "Serving before"))),
          h("tbody", {},
            h("tr", {}, h("th", { scope: "row" }, "HR@10"), h("td", { class: "num" }, pct(e["hr@10"])),
              h("td", { class: "num" }, pct(e["serving_hr@10"]))),
            h("tr", {}, h("th", { scope: "row" }, "NDCG@10"), h("td", { class: "num" }, score(e["ndcg@10"])),
              h("td", { class: "num" }, score(e["serving_ndcg@10"])))))));
      if (t.live && user) loadUser();
      if (t.live && picked) showNeighbours(picked);
    } catch (err) {
      if (gone) return;
      trainResult.replaceChildren();
      showError(trainError, err);
    } finally { trainButton.disabled = false; }
  }

  loadMembers();
  loadPopular();
  if (user) loadUser();
  return () => { gone = true; };
}
