// The clipdex search page: a query box with suggestions, mode switch, facets, results, similar videos,
// paging and sign-in, all through the JSON API (api.js); highlighted text is built by marks.js.

import { ApiProblem, callApi, queryString } from "./api.js";
import { renderHighlight } from "./marks.js";

const PAGE_SIZE = 10;
const SIMILAR_COUNT = 6;
const SUGGESTION_COUNT = 8;
const SUGGEST_DELAY_MS = 120;
const TOKEN_KEY = "clipdex.session";

// The API's duration buckets (bounds inclusive, in seconds), shown before its first facet counts
// arrive and whenever it sends none.
const DURATION_RANGES = [
  { bucket: "under_5_min", label: "Under 5 min", min: null, max: 299 },
  { bucket: "5_to_20_min", label: "5-20 min", min: 300, max: 1199 },
  { bucket: "20_to_60_min", label: "20-60 min", min: 1200, max: 3599 },
  { bucket: "over_60_min", label: "Over 60 min", min: 3600, max: null },
];

const $ = (id) => document.getElementById(id);
const elements = {
  form: $("search-form"),
  query: $("query"),
  suggestions: $("suggestions"),
  filters: $("filters"),
  tagChips: $("tag-chips"),
  durationChips: $("duration-chips"),
  tagsHeading: $("tags-heading"),
  facetScope: $("facet-scope"),
  results: $("results"),
  problem: $("problem"),
  correction: $("correction"),
  status: $("status"),
  list: $("result-list"),
  pager: $("pager"),
  previous: $("previous-page"),
  next: $("next-page"),
  pageNumber: $("page-number"),
  welcome: $("welcome"),
  similar: $("similar"),
  similarHeading: $("similar-heading"),
  similarTo: $("similar-to"),
  similarStatus: $("similar-status"),
  similarList: $("similar-list"),
  similarClose: $("similar-close"),
  accountName: $("account-name"),
  signInToggle: $("sign-in-toggle"),
  signOut: $("sign-out"),
  signInForm: $("sign-in-form"),
  signInMessage: $("sign-in-message"),
  signInCancel: $("sign-in-cancel"),
  login: $("login"),
  password: $("password"),
};

const state = {
  query: "",
  mode: "hybrid",
  tag: null,
  duration: null, // a bucket name of DURATION_RANGES
  exact: false, // typo tolerance off, after "search instead for"
  cursors: [null], // cursors[n] fetches page n + 1
  page: 0,
  durationRanges: DURATION_RANGES,
  searchRequest: null,
  similarRequest: null,
  similarOpener: null,
};

// ------------------------------------------------------------------ formatting

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat("en");

function plural(count, word) {
  return `${compact.format(count)} ${word}${count === 1 ? "" : "s"}`;
}

function clock(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function spokenDuration(seconds) {
  const minutes = Math.round(seconds / 60);
  return minutes < 1 ? `${seconds} seconds` : `${minutes} minute${minutes === 1 ? "" : "s"}`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ------------------------------------------------------------------ thumbnails

// Only the app's own images are loaded. The demo catalogue's thumbnails live on another host: asking
// it would tell a third party who searched for what (and fails offline, and the page's
// Content-Security-Policy would block it anyway), so those get a placeholder drawn here.
function isOwnUrl(url) {
  try {
    return new URL(url, window.location.href).origin === window.location.origin;
  } catch {
    return false;
  }
}

function hue(text) {
  // FNV-1a, so ids that differ in a few characters still get far-apart colours.
  let hash = 0x811c9dc5;
  for (const char of text) hash = Math.imul(hash ^ char.codePointAt(0), 0x01000193) >>> 0;
  return hash % 360;
}

const SVG = "http://www.w3.org/2000/svg";

function thumbnail(hit, size) {
  const frame = element("div", `thumb ${size}`);
  frame.setAttribute("aria-hidden", "true");
  if (hit.thumbnail_url && isOwnUrl(hit.thumbnail_url)) {
    const image = element("img");
    image.src = hit.thumbnail_url;
    image.alt = "";
    image.loading = "lazy";
    frame.append(image);
  } else {
    frame.classList.add("placeholder");
    frame.style.setProperty("--hue", String(hue(hit.id)));
    const glyph = document.createElementNS(SVG, "svg");
    glyph.setAttribute("viewBox", "0 0 24 24");
    const play = document.createElementNS(SVG, "path");
    play.setAttribute("d", "M9 7v10l8-5z");
    glyph.append(play);
    const initial = element("span", "thumb-initial", (hit.tags[0] ?? hit.title).slice(0, 24));
    frame.append(glyph, initial);
  }
  frame.append(element("span", "thumb-duration", clock(hit.duration_seconds)));
  return frame;
}

// ------------------------------------------------------------------ session

function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(TOKEN_KEY) ?? "null");
    if (session && typeof session.token === "string" && session.expiresAt > Date.now()) return session;
  } catch {
    // A damaged entry is the same as none.
  }
  sessionStorage.removeItem(TOKEN_KEY);
  return null;
}

let session = loadSession();

function token() {
  if (session && session.expiresAt <= Date.now()) endSession();
  return session?.token;
}

function showAccount() {
  const signedIn = Boolean(session);
  elements.accountName.hidden = !signedIn;
  elements.accountName.textContent = signedIn ? `Signed in as ${session.name}` : "";
  elements.signOut.hidden = !signedIn;
  elements.signInToggle.hidden = signedIn;
  if (signedIn) closeSignIn(false);
}

function endSession() {
  session = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showAccount();
}

function openSignIn() {
  elements.signInForm.hidden = false;
  elements.signInToggle.setAttribute("aria-expanded", "true");
  elements.signInMessage.textContent = "";
  elements.login.focus();
}

function closeSignIn(returnFocus = true) {
  if (elements.signInForm.hidden) return;
  elements.signInForm.hidden = true;
  elements.signInToggle.setAttribute("aria-expanded", "false");
  elements.password.value = "";
  if (returnFocus) elements.signInToggle.focus();
}

async function signIn(event) {
  event.preventDefault();
  const login = elements.login.value.trim();
  const password = elements.password.value;
  if (!login || !password) {
    elements.signInMessage.textContent = "Enter your email or username and your password.";
    (login ? elements.password : elements.login).focus();
    return;
  }
  const submit = elements.signInForm.querySelector("[type=submit]");
  submit.disabled = true;
  elements.signInMessage.textContent = "";
  try {
    const issued = await callApi("/api/v1/auth/login", { method: "POST", body: { login, password } });
    const me = await callApi("/api/v1/users/me", { token: issued.access_token });
    session = {
      token: issued.access_token,
      expiresAt: Date.now() + issued.expires_in * 1000,
      name: me.display_name || me.username,
    };
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(session));
    elements.login.value = "";
    showAccount();
    elements.signOut.focus();
    if (state.query) runSearch();
  } catch (error) {
    elements.signInMessage.textContent =
      error.status === 401 ? "That email or username and password do not match." : error.message;
    elements.password.select();
  } finally {
    submit.disabled = false;
  }
}

async function signOut() {
  const ending = token();
  endSession();
  elements.signInToggle.focus();
  if (ending) {
    try {
      await callApi("/api/v1/auth/logout", { method: "POST", token: ending });
    } catch {
      // Signed out here either way; a token the server did not take back still expires.
    }
  }
  if (state.query) runSearch();
}

// Calls the API with the session's token; a token the server no longer takes ends the session and the
// call is made again without it, so a stale sign-in never hides public results.
async function callAsViewer(path, signal) {
  const current = token();
  try {
    return await callApi(path, { token: current, signal });
  } catch (error) {
    if (!(error instanceof ApiProblem) || error.status !== 401 || !current) throw error;
    endSession();
    showNotice("Your session has ended, so you are signed out. Results show public videos only.");
    return callApi(path, { signal });
  }
}

// ------------------------------------------------------------------ messages

function showProblem(error) {
  elements.problem.replaceChildren(
    element("strong", "", error.status === 503 ? "Search is unavailable" : "Something went wrong"),
    element("span", "", ` ${error.message}`),
  );
  elements.problem.hidden = false;
}

function showNotice(text) {
  elements.problem.replaceChildren(element("span", "", text));
  elements.problem.hidden = false;
}

function clearProblem() {
  elements.problem.hidden = true;
  elements.problem.replaceChildren();
}

// ------------------------------------------------------------------ search

function durationRange() {
  const chosen = (range) => range.bucket === state.duration;
  return state.durationRanges.find(chosen) ?? DURATION_RANGES.find(chosen) ?? null;
}

function searchParameters() {
  const range = durationRange();
  return {
    q: state.query,
    mode: state.mode,
    tag: state.tag,
    min_duration: range?.min,
    max_duration: range?.max,
    limit: PAGE_SIZE,
    cursor: state.cursors[state.page],
    facets: "tags,duration",
    typo_tolerance: state.exact ? "false" : undefined,
  };
}

function saveLocation(push) {
  const parameters = { q: state.query, mode: state.mode === "hybrid" ? "" : state.mode };
  parameters.tag = state.tag;
  parameters.duration = state.duration;
  parameters.exact = state.exact ? "1" : "";
  const url = `${window.location.pathname}?${queryString(parameters)}`;
  if (url === `${window.location.pathname}${window.location.search}`) return;
  if (push) window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
}

function readLocation() {
  const parameters = new URLSearchParams(window.location.search);
  state.query = (parameters.get("q") ?? "").trim();
  const mode = parameters.get("mode");
  state.mode = ["hybrid", "semantic", "keyword"].includes(mode) ? mode : "hybrid";
  state.tag = parameters.get("tag") || null;
  state.duration = parameters.get("duration") || null;
  state.exact = parameters.get("exact") === "1";
  state.cursors = [null];
  state.page = 0;
  elements.query.value = state.query;
  elements.form.elements.mode.value = state.mode;
}

/** A new search from the first page (the query, mode or a filter changed). */
function startSearch({ push = true } = {}) {
  state.cursors = [null];
  state.page = 0;
  saveLocation(push);
  runSearch();
}

async function runSearch({ focusResults = false } = {}) {
  state.searchRequest?.abort();
  if (!state.query) {
    showEmpty();
    return;
  }
  const request = new AbortController();
  state.searchRequest = request;
  elements.results.setAttribute("aria-busy", "true");
  elements.status.textContent = "Searching...";
  try {
    const page = await callAsViewer(`/api/v1/search?${queryString(searchParameters())}`, request.signal);
    if (request.signal.aborted) return;
    clearProblem();
    showResults(page);
    if (focusResults) elements.results.focus();
  } catch (error) {
    if (error.name === "AbortError") return;
    showProblem(error);
    elements.status.textContent = "";
    elements.list.replaceChildren();
    elements.pager.hidden = true;
    elements.correction.hidden = true;
  } finally {
    if (state.searchRequest === request) {
      state.searchRequest = null;
      elements.results.removeAttribute("aria-busy");
    }
  }
}

function showEmpty() {
  clearProblem();
  elements.welcome.hidden = false;
  elements.filters.hidden = true;
  elements.list.replaceChildren();
  elements.pager.hidden = true;
  elements.correction.hidden = true;
  elements.status.textContent = "";
  closeSimilar(false);
}

function showResults(page) {
  elements.welcome.hidden = true;
  const items = Array.isArray(page.items) ? page.items : [];
  state.cursors[state.page + 1] = page.next_cursor ?? null;
  showCorrection(page.corrected_query);
  showFacets(page.facets, items);
  const first = state.page * PAGE_SIZE + 1;
  if (!items.length) {
    elements.status.textContent = state.page ? "No more results." : "No videos match. Try other words or fewer filters.";
  } else {
    elements.status.textContent = `Results ${first}-${first + items.length - 1}`;
  }
  elements.list.replaceChildren(...items.map(resultItem));
  elements.pager.hidden = !(state.page > 0 || page.next_cursor);
  elements.previous.disabled = state.page === 0;
  elements.next.disabled = !page.next_cursor;
  elements.pageNumber.textContent = `Page ${state.page + 1}`;
}

function showCorrection(corrected) {
  if (!corrected || state.exact || corrected === state.query.toLowerCase()) {
    elements.correction.hidden = true;
    return;
  }
  const suggestion = element("button", "link-button corrected", corrected);
  suggestion.type = "button";
  suggestion.addEventListener("click", () => {
    state.query = corrected;
    elements.query.value = corrected;
    startSearch();
  });
  const exact = element("button", "link-button", `search only for “${state.query}”`);
  exact.type = "button";
  exact.addEventListener("click", () => {
    state.exact = true;
    startSearch();
  });
  elements.correction.replaceChildren(
    "Did you mean ",
    suggestion,
    "? Results include it. You can also ",
    exact,
    ".",
  );
  elements.correction.hidden = false;
}

function snippetOf(hit) {
  const highlights = hit.highlights;
  if (!highlights) return { highlight: null, label: "" };
  const transcript = highlights.transcript;
  const description = highlights.description;
  if (transcript?.matches?.length && !description?.matches?.length) {
    return { highlight: transcript, label: "Transcript: " };
  }
  return { highlight: description, label: "" };
}

function resultItem(hit, index) {
  const item = element("li", "result");
  const titleId = `result-title-${state.page}-${index}`;
  item.setAttribute("aria-labelledby", titleId);

  const body = element("div", "result-body");
  const heading = element("h3", "result-title");
  heading.id = titleId;
  const link = element("a");
  link.href = hit.url;
  link.rel = "noopener noreferrer";
  link.target = "_blank";
  renderHighlight(link, hit.highlights?.title, hit.title);
  heading.append(link);

  const meta = element("p", "meta");
  const length = element("time", "", clock(hit.duration_seconds));
  length.dateTime = `PT${hit.duration_seconds}S`;
  length.title = spokenDuration(hit.duration_seconds);
  meta.append(
    length,
    element("span", "", plural(hit.view_count, "view")),
    element("span", "", plural(hit.like_count, "like")),
  );
  if (hit.visibility !== "public") meta.append(element("span", `badge ${hit.visibility}`, hit.visibility));

  const { highlight, label } = snippetOf(hit);
  const snippet = element("p", "snippet");
  if (label) snippet.append(element("span", "snippet-label", label));
  const snippetText = element("span");
  const shortDescription = hit.description.slice(0, 220) + (hit.description.length > 220 ? "…" : "");
  renderHighlight(snippetText, highlight, shortDescription);
  if (typeof highlight?.snippet === "string" && highlight.snippet) {
    // Say where the excerpt was cut: a transcript excerpt always is, a description's where it differs.
    const at = label ? -1 : hit.description.indexOf(highlight.snippet);
    if (at !== 0) snippetText.prepend("…");
    if (at < 0 || at + highlight.snippet.length < hit.description.length) snippetText.append("…");
  }
  snippet.append(snippetText);

  const footer = element("div", "result-footer");
  const tags = element("ul", "result-tags");
  tags.setAttribute("aria-label", "Tags");
  for (const tag of hit.tags.slice(0, 5)) tags.append(element("li", "", tag));
  const similar = element("button", "button small similar-button", "Similar videos");
  similar.type = "button";
  similar.setAttribute("aria-controls", "similar");
  similar.setAttribute("aria-describedby", titleId);
  similar.addEventListener("click", () => openSimilar(hit, similar));
  footer.append(tags, similar);

  body.append(heading, meta, snippet, footer);
  item.append(thumbnail(hit, "large"), body);
  return item;
}

// ------------------------------------------------------------------ facets

function chip(label, count, pressed, onClick) {
  const item = element("li");
  const button = element("button", "chip");
  button.type = "button";
  button.setAttribute("aria-pressed", String(pressed));
  button.append(element("span", "chip-label", label));
  if (Number.isInteger(count)) {
    const badge = element("span", "chip-count", compact.format(count));
    badge.setAttribute("aria-hidden", "true");
    button.append(badge, element("span", "visually-hidden", `, ${count} video${count === 1 ? "" : "s"}`));
  }
  button.addEventListener("click", onClick);
  item.append(button);
  return item;
}

function tagCountsFrom(items) {
  const counts = new Map();
  for (const hit of items) for (const tag of hit.tags) counts.set(tag, (counts.get(tag) ?? 0) + 1);
  return [...counts].map(([value, count]) => ({ value, count })).sort((a, b) => b.count - a.count);
}

function rangeOf(bucket) {
  // The bucket says its own bounds (min_duration, max_duration: the filters that select it).
  const known = DURATION_RANGES.find((range) => range.bucket === bucket.bucket);
  return {
    bucket: String(bucket.bucket),
    label: known?.label ?? String(bucket.bucket).replaceAll("_", " "),
    min: bucket.min_duration ?? known?.min ?? null,
    max: bucket.max_duration ?? known?.max ?? null,
  };
}

function showFacets(facets, items) {
  elements.filters.hidden = false;
  // Without facets from the API, the tags of this page of results stand in (counted on the page).
  const fromApi = Array.isArray(facets?.tags);
  const tags = (fromApi ? facets.tags : tagCountsFrom(items)).slice(0, 14);
  elements.tagsHeading.textContent = fromApi ? "Tags" : "Tags on this page";
  elements.facetScope.textContent = Number.isInteger(facets?.candidates)
    ? `Counted over the best ${whole.format(facets.candidates)} matches.`
    : "";
  if (state.tag && !tags.some((tag) => tag.value === state.tag)) tags.unshift({ value: state.tag, count: null });
  elements.tagChips.replaceChildren(
    ...tags.map((tag) =>
      chip(tag.value, tag.count, tag.value === state.tag, () => {
        state.tag = state.tag === tag.value ? null : tag.value;
        startSearch();
      }),
    ),
  );

  // Buckets come most frequent first, and only those with videos: shown shortest first.
  const buckets = Array.isArray(facets?.duration) ? facets.duration : null;
  if (buckets) {
    state.durationRanges = buckets.map(rangeOf).sort((a, b) => (a.min ?? 0) - (b.min ?? 0));
    if (state.duration && !state.durationRanges.some((range) => range.bucket === state.duration)) {
      const chosen = DURATION_RANGES.find((range) => range.bucket === state.duration);
      if (chosen) state.durationRanges.unshift(chosen);
    }
  }
  const counts = new Map((buckets ?? []).map((bucket) => [String(bucket.bucket), bucket.count]));
  elements.durationChips.replaceChildren(
    ...state.durationRanges.map((range) =>
      chip(range.label, counts.get(range.bucket), range.bucket === state.duration, () => {
        state.duration = state.duration === range.bucket ? null : range.bucket;
        startSearch();
      }),
    ),
  );
}

// ------------------------------------------------------------------ similar videos

async function openSimilar(hit, opener) {
  state.similarRequest?.abort();
  const request = new AbortController();
  state.similarRequest = request;
  state.similarOpener = opener;
  elements.similar.hidden = false;
  document.body.classList.add("with-similar");
  elements.similarTo.replaceChildren("Like ", element("strong", "", hit.title));
  elements.similarList.replaceChildren();
  elements.similarStatus.textContent = "Looking for similar videos...";
  elements.similar.focus();
  try {
    const page = await callAsViewer(
      `/api/v1/videos/${encodeURIComponent(hit.id)}/similar?${queryString({ limit: SIMILAR_COUNT })}`,
      request.signal,
    );
    const items = Array.isArray(page.items) ? page.items : [];
    elements.similarStatus.textContent = items.length
      ? `${items.length} similar video${items.length === 1 ? "" : "s"}`
      : "No similar videos yet.";
    elements.similarList.replaceChildren(...items.map(similarItem));
  } catch (error) {
    if (error.name === "AbortError") return;
    elements.similarStatus.textContent = error.message;
  }
}

function similarItem(hit) {
  const item = element("li", "similar-item");
  const body = element("div");
  const link = element("a", "similar-title", hit.title);
  link.href = hit.url;
  link.rel = "noopener noreferrer";
  link.target = "_blank";
  const meta = element("p", "meta", `${clock(hit.duration_seconds)} · ${plural(hit.view_count, "view")}`);
  body.append(link, meta);
  item.append(thumbnail(hit, "small"), body);
  return item;
}

function closeSimilar(returnFocus = true) {
  state.similarRequest?.abort();
  if (elements.similar.hidden) return;
  elements.similar.hidden = true;
  document.body.classList.remove("with-similar");
  if (returnFocus && state.similarOpener?.isConnected) state.similarOpener.focus();
  state.similarOpener = null;
}

// ------------------------------------------------------------------ suggestions (ARIA combobox)

const suggest = { timer: 0, request: null, items: [], active: -1, unavailable: false, shownFor: "" };

function suggestionItems(body) {
  const list = Array.isArray(body) ? body : body?.items ?? body?.suggestions ?? [];
  return list
    .map((item) => (typeof item === "string" ? { text: item } : item))
    .filter((item) => item && typeof (item.text ?? item.value) === "string")
    .map((item) => ({ ...item, text: item.text ?? item.value }));
}

function closeSuggestions() {
  clearTimeout(suggest.timer);
  suggest.request?.abort();
  suggest.items = [];
  suggest.active = -1;
  elements.suggestions.hidden = true;
  elements.suggestions.replaceChildren();
  elements.query.setAttribute("aria-expanded", "false");
  elements.query.removeAttribute("aria-activedescendant");
}

function setActive(index) {
  suggest.active = index;
  elements.suggestions.querySelectorAll("[role=option]").forEach((option, at) => {
    option.setAttribute("aria-selected", String(at === index));
    if (at === index) option.scrollIntoView({ block: "nearest" });
  });
  if (index >= 0) elements.query.setAttribute("aria-activedescendant", `suggestion-${index}`);
  else elements.query.removeAttribute("aria-activedescendant");
}

function showSuggestions(items) {
  suggest.items = items;
  suggest.active = -1;
  elements.query.removeAttribute("aria-activedescendant");
  if (!items.length) {
    elements.suggestions.hidden = true;
    elements.suggestions.replaceChildren();
    elements.query.setAttribute("aria-expanded", "false");
    return;
  }
  elements.suggestions.replaceChildren(
    ...items.map((item, index) => {
      const option = element("li", "suggestion");
      option.id = `suggestion-${index}`;
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", "false");
      const text = element("span", "suggestion-text");
      renderHighlight(text, item, item.text);
      option.append(text);
      if (item.kind) option.append(element("span", "suggestion-kind", item.kind));
      if (Number.isInteger(item.video_count) && item.kind === "tag") {
        option.append(element("span", "suggestion-count", plural(item.video_count, "video")));
      }
      option.addEventListener("mousedown", (event) => event.preventDefault()); // keep focus in the box
      option.addEventListener("click", () => chooseSuggestion(index));
      return option;
    }),
  );
  elements.suggestions.hidden = false;
  elements.query.setAttribute("aria-expanded", "true");
}

async function fetchSuggestions(text) {
  suggest.request?.abort();
  const request = new AbortController();
  suggest.request = request;
  try {
    const body = await callAsViewer(
      `/api/v1/search/suggest?${queryString({ q: text, limit: SUGGESTION_COUNT })}`,
      request.signal,
    );
    if (request.signal.aborted || elements.query.value.trim() !== text) return;
    suggest.shownFor = text;
    showSuggestions(suggestionItems(body));
  } catch (error) {
    if (error.name === "AbortError") return;
    // An API without suggestions (404) is asked no more; anything else just shows none this time.
    if (error.status === 404 || error.status === 405) suggest.unavailable = true;
    closeSuggestions();
  }
}

function queueSuggestions() {
  clearTimeout(suggest.timer);
  const text = elements.query.value.trim();
  if (!text || suggest.unavailable) {
    closeSuggestions();
    return;
  }
  suggest.timer = setTimeout(() => fetchSuggestions(text), SUGGEST_DELAY_MS);
}

function chooseSuggestion(index) {
  const item = suggest.items[index];
  if (!item) return;
  elements.query.value = item.text;
  closeSuggestions();
  submitQuery();
}

function onQueryKey(event) {
  const open = !elements.suggestions.hidden && suggest.items.length > 0;
  switch (event.key) {
    case "ArrowDown":
      event.preventDefault();
      if (!open) {
        if (suggest.items.length) showSuggestions(suggest.items);
        else queueSuggestions();
        return;
      }
      setActive((suggest.active + 1) % suggest.items.length);
      break;
    case "ArrowUp":
      if (!open) return;
      event.preventDefault();
      setActive(suggest.active <= 0 ? suggest.items.length - 1 : suggest.active - 1);
      break;
    case "Enter":
      if (open && suggest.active >= 0) {
        event.preventDefault();
        chooseSuggestion(suggest.active);
      }
      break;
    case "Escape":
      if (open) {
        event.preventDefault();
        closeSuggestions();
      } else if (elements.query.value) {
        event.preventDefault();
        elements.query.value = "";
      }
      break;
    case "Tab":
      closeSuggestions();
      break;
    default:
  }
}

// ------------------------------------------------------------------ wiring

function submitQuery() {
  const text = elements.query.value.trim();
  closeSuggestions();
  if (text !== state.query) state.exact = false;
  state.query = text;
  startSearch();
}

elements.form.addEventListener("submit", (event) => {
  event.preventDefault();
  submitQuery();
});
elements.query.addEventListener("input", queueSuggestions);
elements.query.addEventListener("keydown", onQueryKey);
elements.query.addEventListener("blur", () => closeSuggestions());
elements.form.addEventListener("change", (event) => {
  if (event.target.name !== "mode") return;
  state.mode = event.target.value;
  if (state.query) startSearch();
});
elements.next.addEventListener("click", () => {
  if (!state.cursors[state.page + 1]) return;
  state.page += 1;
  runSearch({ focusResults: true });
});
elements.previous.addEventListener("click", () => {
  if (state.page === 0) return;
  state.page -= 1;
  runSearch({ focusResults: true });
});
elements.similarClose.addEventListener("click", () => closeSimilar());
elements.similar.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeSimilar();
});
elements.signInToggle.addEventListener("click", () => {
  if (elements.signInForm.hidden) openSignIn();
  else closeSignIn();
});
elements.signInCancel.addEventListener("click", () => closeSignIn());
elements.signInForm.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeSignIn();
});
elements.signInForm.addEventListener("submit", signIn);
elements.signOut.addEventListener("click", signOut);
for (const example of document.querySelectorAll("[data-example]")) {
  example.addEventListener("click", () => {
    elements.query.value = example.textContent.replace(/\s+/g, " ").trim();
    submitQuery();
  });
}
window.addEventListener("popstate", () => {
  readLocation();
  runSearch();
});

showAccount();
readLocation();
if (state.query) runSearch();
else elements.query.focus();
document.documentElement.dataset.ready = "true";
